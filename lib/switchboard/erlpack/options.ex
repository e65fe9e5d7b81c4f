defmodule Switchboard.Erlpack.Options do
  @moduledoc false
  # The one parser of Switchboard.Erlpack's and Switchboard.Erlpack.Pure's
  # options, so that both twins accept, default and refuse them alike and
  # word their errors once.

  @default_level 6
  @mib 1024 * 1024

  # Atoms a decode with `atoms: :create` may leave free for the rest of the
  # VM: a fiftieth of the table (about 21,000 of OTP's default 1,048,576).
  @atom_reserve_divisor 50

  @decode_defaults [
    atoms: :existing,
    max_depth: 512,
    max_size: 64 * @mib,
    max_decompressed: 64 * @mib,
    max_new_atoms: 5000,
    trailing: :error,
    plain: false,
    isolation: :none,
    timeout: nil
  ]

  @typedoc "Decode options, validated and with their defaults."
  @type decode :: %{
          atoms: :existing | :binary | :create,
          max_depth: non_neg_integer(),
          max_size: non_neg_integer(),
          max_decompressed: non_neg_integer(),
          max_new_atoms: non_neg_integer(),
          trailing: :error | :allow,
          plain: boolean(),
          isolation: :none | :port,
          timeout: non_neg_integer() | nil
        }

  @doc "The default decode options."
  @spec decode_defaults() :: decode()
  def decode_defaults, do: Map.new(@decode_defaults)

  @doc "The zlib level `compressed: true` means."
  def default_level, do: @default_level

  @doc """
  `{level, string_keys}` from encode options; raises `ArgumentError`.
  """
  @spec encode!(term()) :: {0..9, boolean()}
  def encode!([]), do: {0, false}

  def encode!(opts) when is_list(opts) do
    opts = validate!(opts, compressed: false, string_keys: false)

    level =
      case Keyword.fetch!(opts, :compressed) do
        true -> @default_level
        false -> 0
        level when is_integer(level) and level in 0..9 -> level
        other -> raise ArgumentError, bad_option(:compressed, other, "a boolean or a level 0..9")
      end

    case Keyword.fetch!(opts, :string_keys) do
      string_keys when is_boolean(string_keys) -> {level, string_keys}
      other -> raise ArgumentError, bad_option(:string_keys, other, "a boolean")
    end
  end

  def encode!(opts), do: raise(ArgumentError, not_a_keyword_list(opts))

  @doc """
  The level for `fragment/2` (only 0: a fragment is spliced inside other
  terms) and `string_keys`; raises `ArgumentError`.
  """
  @spec fragment!(term()) :: boolean()
  def fragment!(opts) do
    case encode!(opts) do
      {0, string_keys} ->
        string_keys

      _compressed ->
        raise ArgumentError,
              "a fragment cannot be compressed: it is spliced inside other terms " <>
                "(compress the enclosing encode/2 instead)"
    end
  end

  @doc """
  Decode options as a map; `isolation?` says whether `:isolation` is
  accepted (the native codec only). Raises `ArgumentError`.
  """
  @spec decode!(term(), boolean()) :: decode()
  def decode!(opts, isolation?) when is_list(opts) do
    defaults =
      if isolation?,
        do: @decode_defaults,
        else: Keyword.drop(@decode_defaults, [:isolation, :timeout])

    opts = Keyword.merge(@decode_defaults, validate!(opts, defaults))

    %{
      atoms:
        fetch!(
          opts,
          :atoms,
          &(&1 in [:existing, :binary, :create]),
          ":existing, :binary or :create"
        ),
      max_depth: fetch!(opts, :max_depth, &non_neg_integer?/1, "a non-negative integer"),
      max_size: fetch!(opts, :max_size, &non_neg_integer?/1, "a non-negative integer"),
      max_decompressed:
        fetch!(opts, :max_decompressed, &non_neg_integer?/1, "a non-negative integer"),
      max_new_atoms: fetch!(opts, :max_new_atoms, &non_neg_integer?/1, "a non-negative integer"),
      trailing: fetch!(opts, :trailing, &(&1 in [:error, :allow]), ":error or :allow"),
      plain: fetch!(opts, :plain, &is_boolean/1, "a boolean"),
      isolation: fetch!(opts, :isolation, &(&1 in [:none, :port]), ":none or :port"),
      timeout:
        fetch!(opts, :timeout, &(&1 == nil or non_neg_integer?(&1)), "a non-negative integer")
    }
  end

  def decode!(opts, _isolation?), do: raise(ArgumentError, not_a_keyword_list(opts))

  @doc """
  How many atoms a decode with `atoms: :create` may create: `max_new_atoms`,
  or less when the atom table has less room left than its reserve.
  """
  @spec new_atom_allowance(non_neg_integer()) :: non_neg_integer()
  def new_atom_allowance(max_new_atoms) do
    limit = :erlang.system_info(:atom_limit)
    room = limit - :erlang.system_info(:atom_count) - div(limit, @atom_reserve_divisor)
    max(0, min(max_new_atoms, room))
  end

  @doc "The message `decode!/2` raises for an error."
  @spec decode_error_message({atom(), non_neg_integer()} | :port_exited | :timeout) :: String.t()
  def decode_error_message({reason, offset}),
    do: "cannot decode External Term Format: #{inspect(reason)} at byte #{offset}"

  def decode_error_message(:port_exited),
    do: "cannot decode External Term Format: the isolating port exited"

  def decode_error_message(:timeout),
    do: "cannot decode External Term Format: the isolating port timed out"

  @doc "The message when `string_keys: true` makes two keys of `map` equal."
  @spec string_keys_collision_message(map()) :: String.t()
  def string_keys_collision_message(map),
    do: "string_keys: true makes two keys of this map equal: #{inspect(map, limit: 10)}"

  @doc "The message for a sealed fragment whose bytes are not a binary."
  @spec bad_fragment_message(term()) :: String.t()
  def bad_fragment_message(fragment),
    do:
      "invalid fragment (its :bytes must be a binary made by fragment/2): " <>
        inspect(fragment, limit: 10)

  @doc "The message for a value that is not a binary to decode."
  @spec not_a_binary_message(term()) :: String.t()
  def not_a_binary_message(other),
    do: "expected a binary to decode, got: #{inspect(other, limit: 10)}"

  defp validate!(opts, defaults), do: Keyword.validate!(opts, defaults)

  defp non_neg_integer?(value), do: is_integer(value) and value >= 0

  defp fetch!(opts, name, valid?, expected) do
    value = Keyword.fetch!(opts, name)
    if valid?.(value), do: value, else: raise(ArgumentError, bad_option(name, value, expected))
  end

  defp bad_option(name, value, expected),
    do: "invalid #{inspect(name)} option: #{inspect(value)} (expected #{expected})"

  defp not_a_keyword_list(opts),
    do: "expected options to be a keyword list, got: #{inspect(opts)}"
end
