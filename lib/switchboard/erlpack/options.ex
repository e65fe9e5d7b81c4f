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

  @defaults Map.new(@decode_defaults)

  @expected [
    atoms: ":existing, :binary or :create",
    max_depth: "a non-negative integer",
    max_size: "a non-negative integer",
    max_decompressed: "a non-negative integer",
    max_new_atoms: "a non-negative integer",
    trailing: ":error or :allow",
    plain: "a boolean",
    isolation: ":none or :port",
    timeout: "a non-negative integer"
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
  def decode_defaults, do: @defaults

  @doc "The zlib level `compressed: true` means."
  def default_level, do: @default_level

  @doc """
  `{level, string_keys}` from encode options; raises `ArgumentError`.
  """
  @spec encode!(term()) :: {0..9, boolean()}
  def encode!([]), do: {0, false}

  def encode!(opts) when is_list(opts) do
    case encode_options(opts, {0, false}) do
      :error -> refuse_encode_options!(opts)
      options -> options
    end
  end

  def encode!(opts), do: raise(ArgumentError, not_a_keyword_list(opts))

  # As decode_options/3: one pass, errors left to the slow path.
  defp encode_options([], acc), do: acc

  defp encode_options([{:compressed, true} | rest], {_, sk}),
    do: encode_options(rest, {@default_level, sk})

  defp encode_options([{:compressed, false} | rest], {_, sk}), do: encode_options(rest, {0, sk})

  defp encode_options([{:compressed, level} | rest], {_, sk}) when level in 0..9,
    do: encode_options(rest, {level, sk})

  defp encode_options([{:string_keys, sk} | rest], {level, _}) when is_boolean(sk),
    do: encode_options(rest, {level, sk})

  defp encode_options(_other, _acc), do: :error

  defp refuse_encode_options!(opts) do
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
  Decode options as a map; `isolation?` says whether `:isolation` and
  `:timeout` are accepted (the native codec only). Raises `ArgumentError`.
  """
  @spec decode!(term(), boolean()) :: decode()
  def decode!(opts, isolation?) when is_list(opts) do
    case decode_options(opts, isolation?, @defaults) do
      :error -> refuse_decode_options!(opts, isolation?)
      options -> options
    end
  end

  def decode!(opts, _isolation?), do: raise(ArgumentError, not_a_keyword_list(opts))

  # One pass, one clause per option: a decode parses its options on every
  # call, and Keyword.validate!/2 with a fetch per option costs more than
  # decoding a small payload. Anything else is left to the error path.
  defp decode_options([], _isolation?, acc), do: acc

  defp decode_options([{:atoms, atoms} | rest], iso, acc)
       when atoms in [:existing, :binary, :create],
       do: decode_options(rest, iso, %{acc | atoms: atoms})

  defp decode_options([{:plain, plain} | rest], iso, acc) when is_boolean(plain),
    do: decode_options(rest, iso, %{acc | plain: plain})

  defp decode_options([{:trailing, trailing} | rest], iso, acc) when trailing in [:error, :allow],
    do: decode_options(rest, iso, %{acc | trailing: trailing})

  defp decode_options([{key, value} | rest], iso, acc)
       when key in [:max_depth, :max_size, :max_decompressed, :max_new_atoms] and
              is_integer(value) and value >= 0,
       do: decode_options(rest, iso, Map.put(acc, key, value))

  defp decode_options([{:isolation, isolation} | rest], true, acc)
       when isolation in [:none, :port],
       do: decode_options(rest, true, %{acc | isolation: isolation})

  defp decode_options([{:timeout, timeout} | rest], true, acc)
       when timeout == nil or (is_integer(timeout) and timeout >= 0),
       do: decode_options(rest, true, %{acc | timeout: timeout})

  defp decode_options(_other, _isolation?, _acc), do: :error

  # An unknown key or a list that is not a keyword list raise
  # Keyword.validate!/2's own message; otherwise the first bad value is named.
  defp refuse_decode_options!(opts, isolation?) do
    allowed =
      if isolation?,
        do: @decode_defaults,
        else: Keyword.drop(@decode_defaults, [:isolation, :timeout])

    _ = validate!(opts, allowed)

    {name, value} =
      Enum.find(opts, fn option -> decode_options([option], isolation?, @defaults) == :error end)

    raise ArgumentError, bad_option(name, value, Keyword.fetch!(@expected, name))
  end

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

  defp bad_option(name, value, expected),
    do: "invalid #{inspect(name)} option: #{inspect(value)} (expected #{expected})"

  defp not_a_keyword_list(opts),
    do: "expected options to be a keyword list, got: #{inspect(opts)}"
end
