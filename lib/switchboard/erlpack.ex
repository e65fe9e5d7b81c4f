defmodule Switchboard.Erlpack do
  @moduledoc """
  External Term Format (ETF) codec in native code, for gateway payloads.

  The same API and semantics as its pure-Elixir twin,
  `Switchboard.Erlpack.Pure` (see its documentation for the details of
  byte identity, decoding limits and error reasons), implemented by a C++
  core over the public NIF API.

  ## Encoding

  `encode/2` is byte-identical to `:erlang.term_to_binary/1` for numbers,
  atoms, binaries, bitstrings, lists, tuples and maps of up to 32 keys; any
  other term decodes back to itself (`===`) with `:erlang.binary_to_term/1`.
  A `Switchboard.Erlpack.Fragment` anywhere in the term is written as its
  bytes, so a payload encoded once with `fragment/2` can be wrapped in many
  per-session envelopes cheaply.

  ## Decoding

  `decode/2` reads what OTP 25's `:erlang.binary_to_term/1` reads, refuses
  what it refuses, and reports malformed input as
  `{:error, {reason, offset}}` instead of raising. By default it creates no
  atoms and bounds the input size, the inflated size of compressed terms and
  the nesting depth. With `isolation: :port` the untrusted bytes are parsed
  by a port program, outside the VM (see `Switchboard.Erlpack.Port`).

  Large binaries in the result are sub-binaries of the input (no copy), so
  keeping one keeps the input alive; `:binary.copy/1` those kept for long.
  Map keys of up to 24 bytes that repeat within one input share one binary.

  ## Scheduling

  Every call starts on the calling scheduler and uses it for at most about
  half a millisecond. An encode that needs longer continues where it
  stopped on a dirty CPU scheduler (nothing is encoded twice); a decode
  that needs longer (a large or compressed input) moves to a dirty CPU
  scheduler. So a 10 MB encode or decode never holds a normal scheduler for
  more than about a millisecond.
  """

  alias Switchboard.Erlpack.Fragment
  alias Switchboard.Erlpack.Port, as: PortPool
  alias Switchboard.NIF

  @type encode_option :: {:compressed, boolean() | 0..9} | {:string_keys, boolean()}

  @type decode_option ::
          {:atoms, :existing | :binary | :create}
          | {:max_depth, non_neg_integer()}
          | {:max_size, non_neg_integer()}
          | {:max_decompressed, non_neg_integer()}
          | {:trailing, :error | :allow}
          | {:isolation, :none | :port}

  @type reason :: Switchboard.Erlpack.Pure.reason()

  @type error :: {:error, {reason(), offset :: non_neg_integer()}}

  @default_level 6
  @mib 1024 * 1024
  @decode_defaults [
    atoms: :existing,
    max_depth: 512,
    max_size: 64 * @mib,
    max_decompressed: 64 * @mib,
    trailing: :error,
    isolation: :none
  ]

  ## Encoding

  @doc """
  Encodes `term` in the External Term Format.

  Byte-identical to `:erlang.term_to_binary/1` (or `/2` with
  `compressed: level`) for numbers, atoms, binaries, bitstrings, lists,
  tuples and maps of up to 32 keys; any other term decodes back to itself
  with `:erlang.binary_to_term/1`. A `Switchboard.Erlpack.Fragment` anywhere
  in `term` is written as its bytes.

  ## Options

    * `:compressed` - `true` (level #{@default_level}), `false` or a zlib level `0..9`.
      The result is compressed (tag 80) only when that makes it smaller,
      as OTP does. Defaults to `false`.
    * `:string_keys` - when `true`, atom map keys are written as binaries
      holding the atom's name, at every level (atom values, such as `nil`,
      stay atoms). Raises `ArgumentError` if that makes two keys of one map
      equal. Defaults to `false`.

  ## Examples

      iex> Switchboard.Erlpack.encode(%{"op" => 1})
      <<131, 116, 0, 0, 0, 1, 109, 0, 0, 0, 2, 111, 112, 97, 1>>

      iex> Switchboard.Erlpack.encode([1, 2.5, :ok]) == :erlang.term_to_binary([1, 2.5, :ok])
      true

      iex> Switchboard.Erlpack.encode(%{op: 1, d: nil}, string_keys: true) ==
      ...>   :erlang.term_to_binary(%{"op" => 1, "d" => nil})
      true

      iex> Switchboard.Erlpack.encode(:ok, compressed: 10)
      ** (ArgumentError) invalid :compressed option: 10 (expected a boolean or a level 0..9)
  """
  @spec encode(term(), [encode_option()]) :: binary()
  def encode(term, opts \\ [])

  def encode(term, []), do: native_encode(term, 0, false)

  def encode(term, opts) when is_list(opts) do
    {level, string_keys} = encode_options(opts)
    native_encode(term, level, string_keys)
  end

  def encode(_term, opts), do: raise(ArgumentError, not_a_keyword_list(opts))

  @doc """
  Encodes `term` as `encode/2` does, as iodata: the bytes of every
  `Switchboard.Erlpack.Fragment` of 256 bytes or more are listed as the
  fragment's own binary, shared rather than copied.

  This is the gateway's per-session frame: the event is encoded once as a
  fragment, and each session's envelope costs only its own few bytes, ready
  for a socket write (`:gen_tcp.send/2` and friends take iodata). With
  `:compressed` (or for a term so large that the encode continues in a later
  call) the result is one binary, which is iodata too.
  `IO.iodata_to_binary(encode_iodata(term, opts)) == encode(term, opts)`.

  ## Examples

      iex> alias Switchboard.Erlpack
      iex> event = Erlpack.fragment(%{"content" => String.duplicate("x", 300)})
      iex> frame = Erlpack.encode_iodata(%{"op" => 0, "s" => 7, "d" => event})
      iex> IO.iodata_to_binary(frame) == Erlpack.encode(%{"op" => 0, "s" => 7, "d" => event})
      true
      iex> Enum.member?(frame, event.bytes)
      true
  """
  @spec encode_iodata(term(), keyword()) :: iodata()
  def encode_iodata(term, opts \\ [])

  def encode_iodata(term, []), do: check_encoded(NIF.erlpack_encode_iodata(term, false))

  def encode_iodata(term, opts) when is_list(opts) do
    case encode_options(opts) do
      {0, string_keys} -> check_encoded(NIF.erlpack_encode_iodata(term, string_keys))
      {level, string_keys} -> native_encode(term, level, string_keys)
    end
  end

  def encode_iodata(_term, opts), do: raise(ArgumentError, not_a_keyword_list(opts))

  @doc """
  Encodes `term` once, for splicing into later `encode/2` calls.

  Returns a `Switchboard.Erlpack.Fragment` whose bytes are `encode(term, opts)`
  without the version byte. See `Switchboard.Erlpack.Fragment` for the
  gateway pattern this serves.

  ## Options

    * `:string_keys` - as for `encode/2`. Defaults to `false`.
    * `:compressed` - only `false` or `0` (the default): a fragment is
      written inside other terms, where ETF allows no compression; compress
      the enclosing `encode/2` instead.

  ## Examples

      iex> alias Switchboard.Erlpack
      iex> payload = Erlpack.fragment(%{"content" => "hi"})
      iex> Erlpack.encode(%{"op" => 0, "d" => payload}) == Erlpack.encode(%{"op" => 0, "d" => %{"content" => "hi"}})
      true

      iex> Switchboard.Erlpack.fragment([1, 2, 3])
      %Switchboard.Erlpack.Fragment{bytes: <<107, 0, 3, 1, 2, 3>>}

      iex> Switchboard.Erlpack.fragment(:ok, compressed: true)
      ** (ArgumentError) a fragment cannot be compressed: it is spliced inside other terms (compress the enclosing encode/2 instead)
  """
  @spec fragment(term(), [encode_option()]) :: Fragment.t()
  def fragment(term, opts \\ [])

  def fragment(term, opts) when is_list(opts) do
    case encode_options(opts) do
      {0, string_keys} ->
        %Fragment{bytes: check_encoded(NIF.erlpack_fragment(term, string_keys))}

      _compressed ->
        raise ArgumentError,
              "a fragment cannot be compressed: it is spliced inside other terms " <>
                "(compress the enclosing encode/2 instead)"
    end
  end

  def fragment(_term, opts), do: raise(ArgumentError, not_a_keyword_list(opts))

  defp native_encode(term, level, string_keys),
    do: check_encoded(NIF.erlpack_encode(term, level, string_keys))

  defp check_encoded(binary) when is_binary(binary), do: binary
  defp check_encoded(iodata) when is_list(iodata), do: iodata

  defp check_encoded({:error, :string_keys_collision, map}) do
    raise ArgumentError,
          "string_keys: true makes two keys of this map equal: #{inspect(map, limit: 10)}"
  end

  defp check_encoded({:error, :bad_fragment, fragment}) do
    raise ArgumentError,
          "invalid fragment (its :bytes must be a binary made by fragment/2): " <>
            inspect(fragment, limit: 10)
  end

  defp encode_options(opts) do
    opts = Keyword.validate!(opts, compressed: false, string_keys: false)

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

  defp bad_option(name, value, expected),
    do: "invalid #{inspect(name)} option: #{inspect(value)} (expected #{expected})"

  defp not_a_keyword_list(opts),
    do: "expected options to be a keyword list, got: #{inspect(opts)}"

  ## Decoding

  @doc """
  Decodes an External Term Format binary.

  Returns `{:ok, term}`, or `{:ok, term, rest}` with `trailing: :allow`, or
  `{:error, {reason, offset}}` where `offset` is the byte of `binary` at which
  the problem was found (see `Switchboard.Erlpack.Pure` for the reasons).
  Never raises on bad bytes; raises `ArgumentError` when `binary` is not a
  binary or an option is invalid.

  ## Options

    * `:atoms` - what to do with atoms:
      * `:existing` (the default) - only atoms that already exist; any other
        is refused with `:unknown_atom`, as `binary_to_term(bin, [:safe])` does.
      * `:binary` - atoms other than `true`, `false` and `nil` are returned
        as binaries (UTF-8). Nodes of pids, ports and references must still
        be existing atoms.
      * `:create` - atoms are created; only for trusted input, as atoms are
        never garbage collected.
    * `:max_depth` - the deepest nesting of tuples, lists, maps and funs
      allowed. Defaults to `512`.
    * `:max_size` - the largest input accepted, in bytes. Defaults to 64 MiB.
    * `:max_decompressed` - the largest size a compressed term may inflate
      to, in bytes, checked against what it actually inflates to. Defaults
      to 64 MiB.
    * `:trailing` - `:error` (the default) refuses bytes after the term with
      `:trailing_data`; `:allow` returns them as `{:ok, term, rest}`.
    * `:isolation` - `:none` (the default) decodes in this VM; `:port`
      parses the bytes in a pooled port program (`Switchboard.Erlpack.Port`)
      and only reads back its canonical re-encoding, so a flaw in the parser
      cannot corrupt the VM. If the port dies during the request the result
      is `{:error, :port_exited}`.

  ## Examples

      iex> Switchboard.Erlpack.decode(<<131, 104, 2, 100, 0, 2, 111, 107, 97, 7>>)
      {:ok, {:ok, 7}}

      iex> Switchboard.Erlpack.decode(<<131, 97, 1, 255>>, trailing: :allow)
      {:ok, 1, <<255>>}

      iex> Switchboard.Erlpack.decode(<<131, 100, 0, 3, "zzq">>, atoms: :binary)
      {:ok, "zzq"}

      iex> Switchboard.Erlpack.decode(<<131, 104, 2, 97, 1>>)
      {:error, {:truncated, 5}}

      iex> Switchboard.Erlpack.decode(<<131, 70, 0x7FF0000000000000::64>>)
      {:error, {:invalid_float, 1}}

      iex> Switchboard.Erlpack.decode(:not_a_binary)
      ** (ArgumentError) expected a binary to decode, got: :not_a_binary
  """
  @spec decode(binary(), [decode_option()]) ::
          {:ok, term()} | {:ok, term(), binary()} | error() | {:error, :port_exited}
  def decode(binary, opts \\ [])

  def decode(binary, []) when is_binary(binary),
    do: NIF.erlpack_decode(binary, :existing, 512, 64 * @mib, 64 * @mib, false)

  def decode(binary, opts) when is_binary(binary) and is_list(opts) do
    opts = Keyword.validate!(opts, @decode_defaults)
    atoms = fetch_option!(opts, :atoms, &(&1 in [:existing, :binary, :create]))
    max_depth = fetch_option!(opts, :max_depth, &non_neg_integer?/1)
    max_size = fetch_option!(opts, :max_size, &non_neg_integer?/1)
    max_decompressed = fetch_option!(opts, :max_decompressed, &non_neg_integer?/1)
    trailing = fetch_option!(opts, :trailing, &(&1 in [:error, :allow]))

    case fetch_option!(opts, :isolation, &(&1 in [:none, :port])) do
      :none ->
        NIF.erlpack_decode(
          binary,
          atoms,
          # The core counts depth in machine words; deeper is unlimited.
          min(max_depth, 0xFFFFFFFF),
          min(max_size, 0xFFFFFFFFFFFFFFFF),
          min(max_decompressed, 0xFFFFFFFFFFFFFFFF),
          trailing == :allow
        )

      :port ->
        PortPool.decode(binary, atoms, max_depth, max_size, max_decompressed, trailing)
    end
  end

  def decode(binary, opts) when is_binary(binary),
    do: raise(ArgumentError, not_a_keyword_list(opts))

  def decode(other, _opts),
    do: raise(ArgumentError, "expected a binary to decode, got: #{inspect(other, limit: 10)}")

  @doc """
  Like `decode/2` but returns the term (or `{term, rest}` with
  `trailing: :allow`) and raises `ArgumentError` on bad input.

  ## Options

  The same as `decode/2`: `:atoms` (default `:existing`), `:max_depth`
  (default `512`), `:max_size` (default 64 MiB), `:max_decompressed`
  (default 64 MiB), `:trailing` (default `:error`) and `:isolation`
  (default `:none`).

  ## Examples

      iex> Switchboard.Erlpack.decode!(<<131, 107, 0, 2, 1, 2>>)
      [1, 2]

      iex> Switchboard.Erlpack.decode!(<<131, 97, 1, 97, 2>>, trailing: :allow)
      {1, <<97, 2>>}

      iex> Switchboard.Erlpack.decode!(<<131, 97, 1, 0>>)
      ** (ArgumentError) cannot decode External Term Format: trailing_data at byte 3
  """
  @spec decode!(binary(), [decode_option()]) :: term() | {term(), binary()}
  def decode!(binary, opts \\ []) do
    case decode(binary, opts) do
      {:ok, term} ->
        term

      {:ok, term, rest} ->
        {term, rest}

      {:error, {reason, offset}} ->
        raise ArgumentError,
              "cannot decode External Term Format: #{reason} at byte #{offset}"

      {:error, :port_exited} ->
        raise RuntimeError, "cannot decode External Term Format: the isolating port exited"
    end
  end

  defp non_neg_integer?(value), do: is_integer(value) and value >= 0

  defp fetch_option!(opts, name, valid?) do
    value = Keyword.fetch!(opts, name)

    if valid?.(value) do
      value
    else
      raise ArgumentError, "invalid #{inspect(name)} option: #{inspect(value)}"
    end
  end
end
