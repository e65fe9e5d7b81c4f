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

  Inputs of up to 511 bytes of plain data (numbers, atoms, binaries, lists,
  tuples and maps of up to 32 keys: a gateway's usual payload) are checked
  in one pass against every limit and guard and then built by the VM's own
  `binary_to_term`; `decode/1` does that in a call that needs no options.

  Large binaries in the result are sub-binaries of the input (no copy), so
  keeping one keeps the input alive; `:binary.copy/1` those kept for long.
  Map keys of up to 24 bytes that repeat within one input share one binary.

  ## Untrusted input

  Decode bytes from strangers with `plain: true` (and the default
  `atoms: :existing`): only numbers, atoms, binaries, lists, tuples and maps
  are accepted. Besides keeping pids, references and funs of this VM out of
  a client's reach (and fragments unforgeable, see
  `Switchboard.Erlpack.Fragment`), it keeps an OTP 25.2 crash out of reach:
  the runtime itself segfaults building a map whose keys include external
  references (a 365-byte input with two such keys crashes
  `:erlang.binary_to_term(bin, [:safe])`), and every decode path here,
  `isolation: :port` included, hands such a map to the runtime to build.
  Without `plain: true` that input crashes the VM as it crashes OTP's own
  decoder; with it, it is `{:error, {:not_plain, offset}}`.

  Map keys are checked for duplicates in O(n log n) time whatever they are
  (keys chosen to collide in the checker's hash table fall back to a sort),
  and a decode that would do more work than its slice allows on a normal
  scheduler moves to a dirty one.

  ## Scheduling

  Every call starts on the calling scheduler and uses it for at most about
  half a millisecond. An encode that needs longer continues where it
  stopped on a dirty CPU scheduler (nothing is encoded twice); a decode
  that needs longer (a large or compressed input) moves to a dirty CPU
  scheduler. So a 10 MB encode or decode never holds a normal scheduler for
  more than about a millisecond.
  """

  @behaviour Switchboard.Erlpack.Codec

  alias Switchboard.Erlpack.Fragment
  alias Switchboard.Erlpack.Options
  alias Switchboard.Erlpack.Port, as: PortPool
  alias Switchboard.NIF

  # The largest input erlpack_decode_small takes (kPlainDecodeBytes in
  # c_src/nif/erlpack_shared.hpp): larger ones go straight to the full decode.
  @small_decode_bytes 511

  @type encode_option :: Switchboard.Erlpack.Codec.encode_option()
  @type decode_option ::
          Switchboard.Erlpack.Codec.decode_option()
          | {:isolation, :none | :port}
          | {:timeout, timeout()}
  @type reason :: Switchboard.Erlpack.Codec.reason()
  @type error :: Switchboard.Erlpack.Codec.error()

  ## Encoding

  @doc """
  Encodes `term` in the External Term Format.

  Byte-identical to `:erlang.term_to_binary/1` (or `/2` with
  `compressed: level`) for numbers, atoms, binaries, bitstrings, lists,
  tuples and maps of up to 32 keys; any other term decodes back to itself
  with `:erlang.binary_to_term/1`. A `Switchboard.Erlpack.Fragment` anywhere
  in `term` is written as its bytes.

  ## Options

    * `:compressed` - `true` (level #{Options.default_level()}), `false` or a zlib level `0..9`.
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
  @impl true
  @spec encode(term(), [encode_option()]) :: binary()
  def encode(term, opts \\ [])

  def encode(term, []), do: vm_encode(term)

  def encode(term, opts) do
    case Options.encode!(opts) do
      {0, false} -> vm_encode(term)
      {level, string_keys} -> native_encode(term, level, string_keys)
    end
  end

  # Issue 15: where no option needs the NIF's own walk (no :string_keys, no
  # compression, no sealed fragment), the VM's own encoder writes the term,
  # byte-identical to the walk by construction (the contract suite checks
  # the walk against term_to_binary). term_to_binary/1 is a BIF that yields
  # on large terms, so it holds no scheduler. A term holding a sealed
  # fragment holds the seal, whose id words then appear in the output: only
  # then (or on a chance match inside a binary) is the term encoded again by
  # the NIF, which splices the fragment's bytes. The search is a NIF of its
  # own (Fragment.may_hold_seal?/1), not part of one NIF call that encodes
  # too: enif_term_to_binary never yields, and a term's size is not known
  # before it is encoded (bench/RESULTS.md, issue 15 second pass: that call
  # is most of what is left between encode and term_to_binary).
  # The gateway's envelope around a fragment (`%{"op" => 0, "d" => fragment,
  # ...}`, at most four keys: op, d, s, t; see Switchboard.Erlpack.Fragment):
  # the NIF's walk at once, where term_to_binary would only find the seal and
  # the walk encode it again. Only maps that small are looked into: a lookup
  # of "d" in a payload's map (24 keys in MESSAGE_CREATE) compares it with
  # every key, on every encode.
  defp vm_encode(term) when is_map(term) and map_size(term) <= 4 do
    case term do
      %{"d" => %Fragment{}} -> native_encode(term, 0, false)
      _ -> vm_encode_searched(term)
    end
  end

  defp vm_encode(term), do: vm_encode_searched(term)

  defp vm_encode_searched(term) do
    encoded = :erlang.term_to_binary(term)

    if Fragment.may_hold_seal?(encoded),
      do: native_encode(term, 0, false),
      else: encoded
  end

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
  @impl true
  @spec encode_iodata(term(), [encode_option()]) :: iodata()
  def encode_iodata(term, opts \\ []) do
    # The NIF's walk at once: this is the call for frames around fragments,
    # where encode/2's try with term_to_binary would find the seal and
    # encode the term a second time.
    case Options.encode!(opts) do
      {0, string_keys} ->
        check_encoded(NIF.erlpack_encode_iodata(term, string_keys, Fragment.seal()))

      {level, string_keys} ->
        native_encode(term, level, string_keys)
    end
  end

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
      #Switchboard.Erlpack.Fragment<bytes: <<107, 0, 3, 1, 2, 3>>, ...>

      iex> Switchboard.Erlpack.fragment(:ok, compressed: true)
      ** (ArgumentError) a fragment cannot be compressed: it is spliced inside other terms (compress the enclosing encode/2 instead)
  """
  @impl true
  @spec fragment(term(), [encode_option()]) :: Fragment.t()
  def fragment(term, opts \\ []) do
    case Options.fragment!(opts) do
      false ->
        <<131, bytes::binary>> = vm_encode(term)
        Fragment.new(bytes)

      string_keys ->
        Fragment.new(check_encoded(NIF.erlpack_fragment(term, string_keys, Fragment.seal())))
    end
  end

  defp native_encode(term, level, string_keys),
    do: check_encoded(NIF.erlpack_encode(term, level, string_keys, Fragment.seal()))

  defp check_encoded(binary) when is_binary(binary), do: binary
  defp check_encoded(iodata) when is_list(iodata), do: iodata

  defp check_encoded({:error, :string_keys_collision, map}),
    do: raise(ArgumentError, Options.string_keys_collision_message(map))

  defp check_encoded({:error, :bad_fragment, fragment}),
    do: raise(ArgumentError, Options.bad_fragment_message(fragment))

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
        never garbage collected. At most `:max_new_atoms` of them.
    * `:max_new_atoms` - with `atoms: :create`, how many atoms that do not
      exist yet the input may name (distinct names, nodes and names inside
      funs included); the next is refused with `:too_many_atoms` at its
      offset, before any atom is made. Never more than the atom table's room
      less a reserve of a fiftieth of the table. Defaults to `5000`.
    * `:plain` - when `true`, only plain data is accepted: numbers, atoms
      (under the `:atoms` policy), binaries, bitstrings, lists, tuples and
      maps. Pids, ports, references, funs and exports are refused with
      `{:not_plain, offset}` at their tag. Use it for bytes from strangers
      (a gateway's client payloads). Defaults to `false`.
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
    * `:timeout` - with `isolation: :port`, milliseconds to wait for the
      port's answer (queueing included) before returning `{:error, :timeout}`;
      the port is then killed and replaced. Defaults to the pool's
      `:request_timeout` (30 000).

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

      iex> Switchboard.Erlpack.decode(:erlang.term_to_binary([1, self()]), plain: true)
      {:error, {:not_plain, 8}}

      iex> Switchboard.Erlpack.decode(:not_a_binary)
      ** (ArgumentError) expected a binary to decode, got: :not_a_binary
  """
  @impl true
  @spec decode(binary(), [decode_option()]) ::
          {:ok, term()}
          | {:ok, term(), binary()}
          | error()
          | {:error, :port_exited | :timeout}
  def decode(binary, opts \\ [])

  # Every option at its default (atoms: :existing, max_depth: 512, 64 MiB
  # limits, trailing: :error, plain: false), fixed in the NIFs. Small inputs
  # of plain data (the gateway's usual payload) are built by the VM in one
  # call that needs no seal; anything else (false) takes the full decode.
  def decode(binary, []) when is_binary(binary) and byte_size(binary) <= @small_decode_bytes do
    case NIF.erlpack_decode_small(binary) do
      false -> NIF.erlpack_decode_default(binary, Fragment.seal())
      decoded -> decoded
    end
  end

  def decode(binary, []) when is_binary(binary),
    do: NIF.erlpack_decode_default(binary, Fragment.seal())

  def decode(binary, opts) when is_binary(binary) do
    options = Options.decode!(opts, true)

    case options.isolation do
      :none ->
        NIF.erlpack_decode(
          binary,
          options.atoms,
          # The core counts depth in machine words; deeper is unlimited.
          min(options.max_depth, 0xFFFFFFFF),
          min(options.max_size, 0xFFFFFFFFFFFFFFFF),
          min(options.max_decompressed, 0xFFFFFFFFFFFFFFFF),
          options.trailing == :allow,
          options.plain,
          new_atom_allowance(options),
          Fragment.seal()
        )

      :port ->
        PortPool.decode(binary, options)
    end
  end

  def decode(other, _opts), do: raise(ArgumentError, Options.not_a_binary_message(other))

  defp new_atom_allowance(%{atoms: :create, max_new_atoms: max}),
    do: Options.new_atom_allowance(max)

  defp new_atom_allowance(_options), do: 0

  @doc """
  Like `decode/2` but returns the term (or `{term, rest}` with
  `trailing: :allow`) and raises `ArgumentError` on bad input.

  ## Options

  The same as `decode/2`: `:atoms` (default `:existing`), `:max_new_atoms`
  (default `5000`), `:plain` (default `false`), `:max_depth` (default `512`),
  `:max_size` (default 64 MiB), `:max_decompressed` (default 64 MiB),
  `:trailing` (default `:error`), `:isolation` (default `:none`) and
  `:timeout`.

  ## Examples

      iex> Switchboard.Erlpack.decode!(<<131, 107, 0, 2, 1, 2>>)
      [1, 2]

      iex> Switchboard.Erlpack.decode!(<<131, 97, 1, 97, 2>>, trailing: :allow)
      {1, <<97, 2>>}

      iex> Switchboard.Erlpack.decode!(<<131, 97, 1, 0>>)
      ** (ArgumentError) cannot decode External Term Format: :trailing_data at byte 3
  """
  @impl true
  @spec decode!(binary(), [decode_option()]) :: term() | {term(), binary()}
  def decode!(binary, opts \\ []) do
    case decode(binary, opts) do
      {:ok, term} -> term
      {:ok, term, rest} -> {term, rest}
      {:error, reason} -> raise ArgumentError, Options.decode_error_message(reason)
    end
  end
end
