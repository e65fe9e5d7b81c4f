defmodule Switchboard.Erlpack.Pure do
  @moduledoc """
  Pure-Elixir External Term Format (ETF) codec, the twin of `Switchboard.Erlpack`.

  Same API and semantics as the native codec; it is the oracle in
  differential tests and the baseline in benchmarks, so it is built for speed:
  the encoder produces iodata in one pass and the decoder is a single
  tail-recursive loop over the input with an explicit stack, so that the
  compiler keeps one match context for the whole binary.

  ## Encoding

  `encode/2` is byte-identical to `:erlang.term_to_binary/1` of OTP 25 for
  terms made of numbers, atoms, binaries, bitstrings, lists, tuples and
  maps of up to 32 keys. Like OTP 25 it writes atoms whose characters all
  fit in Latin-1 as `ATOM_EXT` (tag 100, Latin-1 bytes) and other atoms as
  `SMALL_ATOM_UTF8_EXT`/`ATOM_UTF8_EXT` (119/118), and it writes the keys of
  small maps in the runtime's internal order, where every integer sorts
  before every float (`%{1.5 => a, 2 => b}` is written with `2` first).
  Larger maps, pids, references, ports and funs round-trip through
  `:erlang.binary_to_term/1` but are not promised byte for byte.

  ## Decoding

  `decode/2` reads every tag OTP 25's `:erlang.binary_to_term/1` reads and
  refuses what it refuses, but returns `{:error, {reason, offset}}` instead
  of raising. It is safe on untrusted input: by default it creates no atoms
  and bounds the input size, the inflated size of compressed terms and the
  nesting depth.

  One deliberate difference: OTP 25's decoder also reads tags 73 and 75
  (`ATOM_INTERNAL_REF2`/`3`), indexes into the runtime's own atom table that
  only the runtime itself writes (ETS compression); they are not part of the
  external format, mean nothing to another VM, and are refused here as
  `:unknown_tag`.

  Decoded binaries are sub-binaries of the input (no copy), so keeping a
  small decoded binary keeps the whole input alive; use `:binary.copy/1` on
  those you keep for long.

  Error reasons are shared with the native codec and listed in
  `Switchboard.Erlpack.Codec`.
  """

  @behaviour Switchboard.Erlpack.Codec

  alias Switchboard.Erlpack.Fragment

  alias Switchboard.Erlpack.Options

  @type encode_option :: Switchboard.Erlpack.Codec.encode_option()
  @type decode_option :: Switchboard.Erlpack.Codec.decode_option()
  @type reason :: Switchboard.Erlpack.Codec.reason()
  @type error :: Switchboard.Erlpack.Codec.error()

  # With atoms: :create, how many more new atoms this decode may make.
  @allowance_key {__MODULE__, :new_atom_allowance}

  @version 131

  # Tags, as named in OTP's erl_ext_dist documentation.
  @new_float 70
  @bit_binary 77
  @compressed 80
  @small_integer 97
  @integer 98
  @float 99
  @atom 100
  @small_tuple 104
  @large_tuple 105
  @nil_ext 106
  @string 107
  @list 108
  @binary 109
  @small_big 110
  @large_big 111
  @small_atom 115
  @map 116
  @atom_utf8 118
  @small_atom_utf8 119

  # Tags whose terms are rebuilt by OTP from their exact bytes once checked.
  @new_port 89
  @newer_reference 90
  @new_pid 88
  @reference 101
  @port 102
  @pid 103
  @export 113
  @new_reference 114
  @new_fun 112
  @v4_port 120
  @opaque_tags [@new_pid, @new_port, @newer_reference, @reference, @port, @pid] ++
                 [@export, @new_fun, @new_reference, @v4_port]

  @core_tags [@new_float, @bit_binary, @small_integer, @integer, @float, @atom] ++
               [@small_tuple, @large_tuple, @nil_ext, @string, @list, @binary, @small_big] ++
               [@large_big, @small_atom, @map, @atom_utf8, @small_atom_utf8]

  # In NEW_FUN_EXT the module follows the tag, size, arity, uniq, index and numfree.
  @fun_module_at 1 + 4 + 1 + 16 + 4 + 4
  @max_fun_free_variables 255

  # A depth no term that decoded once can exceed.
  @max_depth 0xFFFFFFFF
  @mib 1024 * 1024

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

      iex> Switchboard.Erlpack.Pure.encode(%{"op" => 1})
      <<131, 116, 0, 0, 0, 1, 109, 0, 0, 0, 2, 111, 112, 97, 1>>

      iex> Switchboard.Erlpack.Pure.encode([1, 2.5, :ok]) == :erlang.term_to_binary([1, 2.5, :ok])
      true

      iex> Switchboard.Erlpack.Pure.encode(%{op: 1, d: nil}, string_keys: true) ==
      ...>   :erlang.term_to_binary(%{"op" => 1, "d" => nil})
      true

      iex> Switchboard.Erlpack.Pure.encode(:ok, compressed: 10)
      ** (ArgumentError) invalid :compressed option: 10 (expected a boolean or a level 0..9)
  """
  @impl true
  @spec encode(term(), [encode_option()]) :: binary()
  def encode(term, opts \\ [])

  def encode(term, []), do: IO.iodata_to_binary([@version | enc(term, false)])

  def encode(term, opts) do
    {level, string_keys} = Options.encode!(opts)

    case level do
      0 -> IO.iodata_to_binary([@version | enc(term, string_keys)])
      level -> compress(IO.iodata_to_binary(enc(term, string_keys)), level)
    end
  end

  @doc """
  Encodes `term` as `encode/2` does, as iodata, with every fragment's bytes
  shared rather than copied (see `Switchboard.Erlpack.encode_iodata/2`).
  With `:compressed` the result is one binary.

  ## Examples

      iex> alias Switchboard.Erlpack.Pure
      iex> event = Pure.fragment(%{"content" => "hi"})
      iex> frame = Pure.encode_iodata(%{"op" => 0, "d" => event})
      iex> IO.iodata_to_binary(frame) == Pure.encode(%{"op" => 0, "d" => event})
      true
  """
  @impl true
  @spec encode_iodata(term(), [encode_option()]) :: iodata()
  def encode_iodata(term, opts \\ [])

  def encode_iodata(term, []), do: [@version | enc(term, false)]

  def encode_iodata(term, opts) do
    case Options.encode!(opts) do
      {0, string_keys} -> [@version | enc(term, string_keys)]
      _compressed -> encode(term, opts)
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

      iex> alias Switchboard.Erlpack.Pure
      iex> payload = Pure.fragment(%{"content" => "hi"})
      iex> Pure.encode(%{"op" => 0, "d" => payload}) == Pure.encode(%{"op" => 0, "d" => %{"content" => "hi"}})
      true

      iex> Switchboard.Erlpack.Pure.fragment([1, 2, 3])
      #Switchboard.Erlpack.Fragment<bytes: <<107, 0, 3, 1, 2, 3>>, ...>

      iex> Switchboard.Erlpack.Pure.fragment(:ok, compressed: true)
      ** (ArgumentError) a fragment cannot be compressed: it is spliced inside other terms (compress the enclosing encode/2 instead)
  """
  @impl true
  @spec fragment(term(), [encode_option()]) :: Fragment.t()
  def fragment(term, opts \\ []) do
    string_keys = Options.fragment!(opts)
    Fragment.new(IO.iodata_to_binary(enc(term, string_keys)))
  end

  # Every clause returns a binary or a list, never a bare byte, so that
  # callers may build improper iolists such as `[acc | enc(term)]`.
  defp enc(int, _sk) when is_integer(int) and int >= 0 and int <= 255, do: [@small_integer, int]

  defp enc(int, _sk) when is_integer(int) and int >= -0x80000000 and int <= 0x7FFFFFFF,
    do: <<@integer, int::32>>

  defp enc(int, _sk) when is_integer(int), do: enc_big(int)
  defp enc(float, _sk) when is_float(float), do: <<@new_float, float::float>>
  defp enc(nil, _sk), do: <<@atom, 3::16, "nil">>
  defp enc(true, _sk), do: <<@atom, 4::16, "true">>
  defp enc(false, _sk), do: <<@atom, 5::16, "false">>
  defp enc(atom, _sk) when is_atom(atom), do: enc_atom(atom)
  defp enc(bin, _sk) when is_binary(bin), do: [<<@binary, byte_size(bin)::32>> | bin]
  defp enc(bits, _sk) when is_bitstring(bits), do: enc_bits(bits)
  defp enc([], _sk), do: <<@nil_ext>>

  defp enc(list, sk) when is_list(list) do
    case byte_list_length(list, 0) do
      # A list of bytes is itself iodata: it is copied once, at the end.
      length when length < 65_536 -> [<<@string, length::16>> | list]
      _ -> enc_list(list, sk, [], 0)
    end
  end

  defp enc(tuple, sk) when is_tuple(tuple) do
    case tuple_size(tuple) do
      size when size < 256 -> [@small_tuple, size | enc_elements(tuple, 1, size, sk)]
      size -> [<<@large_tuple, size::32>> | enc_elements(tuple, 1, size, sk)]
    end
  end

  # Only a fragment holding the seal is spliced; any other map naming the
  # struct (decoded from a stranger's bytes, say) is the map it is.
  defp enc(%Fragment{} = fragment, sk) do
    cond do
      not Fragment.sealed?(fragment) -> enc_map(fragment, sk)
      is_binary(fragment.bytes) -> fragment.bytes
      true -> raise ArgumentError, Options.bad_fragment_message(fragment)
    end
  end

  defp enc(map, sk) when is_map(map), do: enc_map(map, sk)

  # Pids, references, ports and funs: OTP's own encoding.

  defp enc(other, _sk) do
    <<@version, bytes::binary>> = :erlang.term_to_binary(other)
    bytes
  end

  defp enc_map(map, false),
    do: [<<@map, map_size(map)::32>> | enc_pairs(:maps.to_list(map), false)]

  defp enc_map(map, true),
    do: [<<@map, map_size(map)::32>> | enc_pairs(string_key_pairs(map), true)]

  defp enc_big(int) do
    {sign, magnitude} = if int < 0, do: {1, -int}, else: {0, int}
    digits = :binary.encode_unsigned(magnitude, :little)

    case byte_size(digits) do
      n when n < 256 -> [<<@small_big, n, sign>> | digits]
      n -> [<<@large_big, n::32, sign>> | digits]
    end
  end

  # OTP 25 writes an atom as Latin-1 when it can (ATOM_EXT, even when short),
  # as UTF-8 only when it must.
  defp enc_atom(atom) do
    latin1 = :erlang.atom_to_binary(atom, :latin1)
    [<<@atom, byte_size(latin1)::16>> | latin1]
  catch
    :error, :badarg ->
      case :erlang.atom_to_binary(atom, :utf8) do
        utf8 when byte_size(utf8) < 256 -> [<<@small_atom_utf8, byte_size(utf8)>> | utf8]
        utf8 -> [<<@atom_utf8, byte_size(utf8)::16>> | utf8]
      end
  end

  defp enc_bits(bits) do
    used = rem(bit_size(bits), 8)
    bytes = div(bit_size(bits), 8) + 1
    [<<@bit_binary, bytes::32, used>> | <<bits::bitstring, 0::size(8 - used)>>]
  end

  # The length of a proper list of bytes, or 65_536 (too long for STRING_EXT)
  # for anything else; stops early either way.
  defp byte_list_length([byte | rest], length)
       when is_integer(byte) and byte >= 0 and byte <= 255 and length < 65_535,
       do: byte_list_length(rest, length + 1)

  defp byte_list_length([], length), do: length
  defp byte_list_length(_other, _length), do: 65_536

  defp enc_list([head | tail], sk, acc, length),
    do: enc_list(tail, sk, [acc | enc(head, sk)], length + 1)

  defp enc_list(tail, sk, acc, length), do: [<<@list, length::32>>, acc | enc(tail, sk)]

  defp enc_elements(_tuple, index, size, _sk) when index > size, do: []

  defp enc_elements(tuple, index, size, sk),
    do: [enc(:erlang.element(index, tuple), sk) | enc_elements(tuple, index + 1, size, sk)]

  defp enc_pairs([{key, value} | rest], sk),
    do: [enc(key, sk), enc(value, sk) | enc_pairs(rest, sk)]

  defp enc_pairs([], _sk), do: []

  # Renames atom keys, keeping the order term_to_binary would use for the
  # renamed map. Atoms sort by name, as binaries do, and binaries sort after
  # every other key, so the renamed keys go last in the order they had. Only
  # a map that already has bitstring keys needs rebuilding, which also
  # exposes keys that collide (`:a` and `"a"`).
  defp string_key_pairs(map) do
    pairs = :maps.to_list(map)

    case split_atom_keys(pairs, [], [], false) do
      {[], _others, _bitstring_keys?} ->
        pairs

      {renamed, others, false} ->
        :lists.reverse(others, :lists.reverse(renamed))

      {_renamed, _others, true} ->
        renamed = :maps.from_list(for {key, value} <- pairs, do: {string_key(key), value})

        if map_size(renamed) != map_size(map) do
          raise ArgumentError, Options.string_keys_collision_message(map)
        end

        :maps.to_list(renamed)
    end
  end

  # Returns the renamed pairs and the other pairs, both reversed, and
  # whether any other key is a bitstring.
  defp split_atom_keys([{key, value} | rest], renamed, others, bitstring_keys?)
       when is_atom(key) do
    pair = {:erlang.atom_to_binary(key, :utf8), value}
    split_atom_keys(rest, [pair | renamed], others, bitstring_keys?)
  end

  defp split_atom_keys([{key, _value} = pair | rest], renamed, others, bitstring_keys?),
    do: split_atom_keys(rest, renamed, [pair | others], bitstring_keys? or is_bitstring(key))

  defp split_atom_keys([], renamed, others, bitstring_keys?),
    do: {renamed, others, bitstring_keys?}

  defp string_key(key) when is_atom(key), do: :erlang.atom_to_binary(key, :utf8)
  defp string_key(key), do: key

  # OTP compresses into a buffer 5 bytes smaller than the plain encoding and
  # keeps the plain one when the zlib data does not fit.
  defp compress(body, level) do
    size = byte_size(body)
    zstream = :zlib.open()

    zdata =
      try do
        :ok = :zlib.deflateInit(zstream, level)
        data = IO.iodata_to_binary(:zlib.deflate(zstream, body, :finish))
        :ok = :zlib.deflateEnd(zstream)
        data
      after
        :zlib.close(zstream)
      end

    if byte_size(zdata) <= size - 5 do
      IO.iodata_to_binary([<<@version, @compressed, size::32>> | zdata])
    else
      <<@version, body::binary>>
    end
  end

  ## Decoding

  @doc """
  Decodes an External Term Format binary.

  Returns `{:ok, term}`, or `{:ok, term, rest}` with `trailing: :allow`, or
  `{:error, {reason, offset}}` where `offset` is the byte of `binary` at which
  the problem was found (see the module documentation for the reasons).
  Never raises on bad input.

  ## Options

  The options of `Switchboard.Erlpack.decode/2` (parsed by the same code,
  with the same defaults), except `:isolation` and `:timeout`: `:atoms`,
  `:max_new_atoms`, `:plain`, `:max_depth`, `:max_size`,
  `:max_decompressed` and `:trailing`. Inflation goes in small steps and
  stops as soon as the output passes `:max_decompressed`.

  ## Examples

      iex> Switchboard.Erlpack.Pure.decode(<<131, 104, 2, 100, 0, 2, 111, 107, 97, 7>>)
      {:ok, {:ok, 7}}

      iex> Switchboard.Erlpack.Pure.decode(<<131, 97, 1, 255>>, trailing: :allow)
      {:ok, 1, <<255>>}

      iex> Switchboard.Erlpack.Pure.decode(<<131, 100, 0, 3, "zzq">>, atoms: :binary)
      {:ok, "zzq"}

      iex> Switchboard.Erlpack.Pure.decode(<<131, 104, 2, 97, 1>>)
      {:error, {:truncated, 5}}

      iex> Switchboard.Erlpack.Pure.decode(<<131, 70, 0x7FF0000000000000::64>>)
      {:error, {:invalid_float, 1}}
  """
  @impl true
  @spec decode(binary(), [decode_option()]) ::
          {:ok, term()} | {:ok, term(), binary()} | error()
  def decode(binary, opts \\ [])

  def decode(binary, []) when is_binary(binary),
    do: decode_with(binary, :existing, 512, 64 * @mib, 64 * @mib, :error)

  def decode(binary, opts) when is_binary(binary) do
    options = Options.decode!(opts, false)
    # The decoding loop carries one value for the atoms policy: plain data
    # wraps it, which only the atom readers and the opaque tags look at.
    atoms = if options.plain, do: {:plain, options.atoms}, else: options.atoms

    run = fn ->
      decode_with(
        binary,
        atoms,
        options.max_depth,
        options.max_size,
        options.max_decompressed,
        options.trailing
      )
    end

    if options.atoms == :create do
      previous = Process.put(@allowance_key, Options.new_atom_allowance(options.max_new_atoms))

      try do
        run.()
      after
        if previous,
          do: Process.put(@allowance_key, previous),
          else: Process.delete(@allowance_key)
      end
    else
      run.()
    end
  end

  def decode(other, _opts), do: raise(ArgumentError, Options.not_a_binary_message(other))

  @doc """
  Like `decode/2` but returns the term (or `{term, rest}` with
  `trailing: :allow`) and raises `ArgumentError` on bad input.

  ## Options

  The same as `decode/2`.

  ## Examples

      iex> Switchboard.Erlpack.Pure.decode!(<<131, 107, 0, 2, 1, 2>>)
      [1, 2]

      iex> Switchboard.Erlpack.Pure.decode!(<<131, 97, 1, 97, 2>>, trailing: :allow)
      {1, <<97, 2>>}

      iex> Switchboard.Erlpack.Pure.decode!(<<131, 97, 1, 0>>)
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

  defp decode_with(binary, _atoms, _max_depth, max_size, _max_inflated, _trailing)
       when byte_size(binary) > max_size,
       do: {:error, {:too_large, 0}}

  defp decode_with(binary, atoms, max_depth, _max_size, max_inflated, trailing) do
    case binary do
      <<@version, @compressed, declared::32, zdata::binary>> ->
        decode_compressed(zdata, declared, {max_depth, atoms}, max_inflated, trailing)

      <<@version, @compressed, _::binary>> ->
        {:error, {:truncated, 1}}

      <<@version, data::binary>> ->
        case run(data, 1, max_depth, atoms) do
          {:ok, term, rest, _pos} when trailing == :allow -> {:ok, term, rest}
          {:ok, term, <<>>, _pos} -> {:ok, term}
          {:ok, _term, _rest, pos} -> {:error, {:trailing_data, pos}}
          error -> error
        end

      <<>> ->
        {:error, {:truncated, 0}}

      _other ->
        {:error, {:bad_version, 0}}
    end
  end

  defp run(data, pos, max_depth, atoms) do
    value(data, pos, :top, 1, [], [], max_depth, atoms)
  catch
    :throw, {__MODULE__, :duplicate_key, {:map_at, map_pos}} ->
      {:error, {:duplicate_key, duplicate_key_at(data, pos, map_pos, atoms)}}

    :throw, {__MODULE__, reason, offset} ->
      {:error, {reason, offset}}
  end

  # The offset of the second occurrence of the smallest key that occurs
  # twice in the map at `map_pos`, found again only once a map is refused.
  defp duplicate_key_at(data, pos, map_pos, atoms) do
    <<_::binary-size(map_pos - pos), @map, size::32, pairs::bits>> = data
    keys = map_keys(pairs, map_pos + 5, size, atoms, [])

    {_seen, duplicates} =
      Enum.reduce(keys, {%{}, []}, fn {key, at}, {seen, duplicates} ->
        case seen do
          %{^key => :twice} -> {seen, duplicates}
          %{^key => _first} -> {Map.put(seen, key, :twice), [{key, at} | duplicates]}
          _new -> {Map.put(seen, key, at), duplicates}
        end
      end)

    {_key, at} = Enum.min_by(duplicates, fn {key, _at} -> key end)
    at
  end

  defp map_keys(_data, _pos, 0, _atoms, keys), do: Enum.reverse(keys)

  defp map_keys(data, pos, size, atoms, keys) do
    {:ok, key, data, value_pos} = value(data, pos, :top, 1, [], [], @max_depth, atoms)
    {:ok, _value, data, next_pos} = value(data, value_pos, :top, 1, [], [], @max_depth, atoms)
    map_keys(data, next_pos, size - 1, atoms, [{key, pos} | keys])
  end

  @compile {:inline, fail: 2}
  defp fail(reason, offset), do: throw({__MODULE__, reason, offset})

  # The decoding loop: `value/8` reads one term at `pos` and `continue/9`
  # hands it to the container being filled. That container is kept unpacked
  # in the arguments: its `kind`, how many terms it still needs (`count`) and
  # the terms so far, in reverse (`acc`). Enclosing containers wait on `stack`
  # as `{kind, count, acc, offset of the inner container's tag}`; `room` is
  # how many more levels may open. Both functions start by matching on the
  # binary, so one match context runs through the whole input.
  #
  # kinds: :top, :tuple, :list, :tail (a list's tail), :key and :value (a
  # map; acc holds `{key, value}` pairs, then the pending key).
  defp value(data, pos, kind, count, acc, stack, room, atoms) do
    case data do
      <<@small_integer, int, rest::bits>> ->
        continue(rest, pos + 2, int, kind, count, acc, stack, room, atoms)

      <<@integer, int::32-signed, rest::bits>> ->
        continue(rest, pos + 5, int, kind, count, acc, stack, room, atoms)

      <<@binary, size::32, bin::binary-size(size), rest::bits>> ->
        continue(rest, pos + 5 + size, bin, kind, count, acc, stack, room, atoms)

      <<@atom, size::16, name::binary-size(size), rest::bits>> ->
        atom = latin1_atom(name, atoms, pos)
        continue(rest, pos + 3 + size, atom, kind, count, acc, stack, room, atoms)

      <<@small_atom_utf8, size, name::binary-size(size), rest::bits>> ->
        atom = utf8_atom(name, atoms, pos)
        continue(rest, pos + 2 + size, atom, kind, count, acc, stack, room, atoms)

      <<@map, 0::32, rest::bits>> ->
        continue(rest, pos + 5, %{}, kind, count, acc, stack, room, atoms)

      # Containers: a count the remaining input cannot hold (every term
      # takes a byte) is refused at once, then the depth is checked.
      <<@map, size::32, rest::bits>> ->
        need = 2 * size

        case rest do
          <<_::binary-size(need), _::bits>> when room > 0 ->
            stack = [{kind, count, acc, pos} | stack]
            value(rest, pos + 5, :key, size, [], stack, room - 1, atoms)

          <<_::binary-size(need), _::bits>> ->
            fail(:depth_exceeded, pos)

          _short ->
            fail(:truncated, pos)
        end

      <<@nil_ext, rest::bits>> ->
        continue(rest, pos + 1, [], kind, count, acc, stack, room, atoms)

      <<@small_tuple, 0, rest::bits>> ->
        continue(rest, pos + 2, {}, kind, count, acc, stack, room, atoms)

      <<@small_tuple, size, rest::bits>> ->
        case rest do
          <<_::binary-size(size), _::bits>> when room > 0 ->
            stack = [{kind, count, acc, pos} | stack]
            value(rest, pos + 2, :tuple, size, [], stack, room - 1, atoms)

          <<_::binary-size(size), _::bits>> ->
            fail(:depth_exceeded, pos)

          _short ->
            fail(:truncated, pos)
        end

      # A list of no elements is its tail alone, and no container.
      <<@list, 0::32, rest::bits>> ->
        value(rest, pos + 5, kind, count, acc, stack, room, atoms)

      <<@list, size::32, rest::bits>> ->
        # The elements and the tail.
        need = size + 1

        case rest do
          <<_::binary-size(need), _::bits>> when room > 0 ->
            stack = [{kind, count, acc, pos} | stack]
            value(rest, pos + 5, :list, size, [], stack, room - 1, atoms)

          <<_::binary-size(need), _::bits>> ->
            fail(:depth_exceeded, pos)

          _short ->
            fail(:truncated, pos)
        end

      <<@string, size::16, bytes::binary-size(size), rest::bits>> ->
        list = :erlang.binary_to_list(bytes)
        continue(rest, pos + 3 + size, list, kind, count, acc, stack, room, atoms)

      <<@new_float, float::float, rest::bits>> ->
        continue(rest, pos + 9, float, kind, count, acc, stack, room, atoms)

      <<@new_float, _nan_or_infinity::64, _::bits>> ->
        fail(:invalid_float, pos)

      <<@small_big, size, sign, digits::binary-size(size), rest::bits>> ->
        int = big(sign, digits, pos)
        continue(rest, pos + 3 + size, int, kind, count, acc, stack, room, atoms)

      <<@large_tuple, 0::32, rest::bits>> ->
        continue(rest, pos + 5, {}, kind, count, acc, stack, room, atoms)

      <<@large_tuple, size::32, rest::bits>> ->
        case rest do
          <<_::binary-size(size), _::bits>> when room > 0 ->
            stack = [{kind, count, acc, pos} | stack]
            value(rest, pos + 5, :tuple, size, [], stack, room - 1, atoms)

          <<_::binary-size(size), _::bits>> ->
            fail(:depth_exceeded, pos)

          _short ->
            fail(:truncated, pos)
        end

      <<@atom_utf8, size::16, name::binary-size(size), rest::bits>> ->
        atom = utf8_atom(name, atoms, pos)
        continue(rest, pos + 3 + size, atom, kind, count, acc, stack, room, atoms)

      <<@small_atom, size, name::binary-size(size), rest::bits>> ->
        atom = latin1_atom(name, atoms, pos)
        continue(rest, pos + 2 + size, atom, kind, count, acc, stack, room, atoms)

      <<@large_big, size::32, sign, digits::binary-size(size), rest::bits>> ->
        int = big(sign, digits, pos)
        continue(rest, pos + 6 + size, int, kind, count, acc, stack, room, atoms)

      <<@bit_binary, size::32, used, data::binary-size(size), rest::bits>> ->
        bits = bits(data, size, used, pos)
        continue(rest, pos + 6 + size, bits, kind, count, acc, stack, room, atoms)

      <<@float, text::binary-size(31), rest::bits>> ->
        float = float_ext(text, pos)
        continue(rest, pos + 32, float, kind, count, acc, stack, room, atoms)

      <<tag, _::bits>> when tag in @opaque_tags and is_tuple(atoms) ->
        fail(:not_plain, pos)

      <<tag, _::bits>> when tag in @opaque_tags ->
        {term, size} = opaque(tag, data, pos, room, atoms)
        <<_::binary-size(size), rest::bits>> = data
        continue(rest, pos + size, term, kind, count, acc, stack, room, atoms)

      <<@compressed, _::bits>> ->
        fail(:nested_compression, pos)

      <<tag, _::bits>> when tag in @core_tags ->
        fail(:truncated, pos)

      <<_tag, _::bits>> ->
        fail(:unknown_tag, pos)

      <<>> ->
        fail(:truncated, pos)
    end
  end

  defp continue(<<data::bits>>, pos, term, kind, count, acc, stack, room, atoms) do
    case kind do
      :key ->
        value(data, pos, :value, count, [term | acc], stack, room, atoms)

      :value when count > 1 ->
        [key | acc] = acc
        value(data, pos, :key, count - 1, [{key, term} | acc], stack, room, atoms)

      :value ->
        [key | acc] = acc
        pairs = [{key, term} | acc]
        map = :maps.from_list(pairs)
        [{kind, count, acc, map_pos} | stack] = stack
        if map_size(map) != length(pairs), do: fail(:duplicate_key, {:map_at, map_pos})
        continue(data, pos, map, kind, count, acc, stack, room + 1, atoms)

      :tuple when count > 1 ->
        value(data, pos, :tuple, count - 1, [term | acc], stack, room, atoms)

      :tuple ->
        tuple = :erlang.list_to_tuple(:lists.reverse(acc, [term]))
        [{kind, count, acc, _pos} | stack] = stack
        continue(data, pos, tuple, kind, count, acc, stack, room + 1, atoms)

      :list when count > 1 ->
        value(data, pos, :list, count - 1, [term | acc], stack, room, atoms)

      :list ->
        case data do
          <<@nil_ext, rest::bits>> ->
            list = :lists.reverse(acc, [term])
            [{kind, count, acc, _pos} | stack] = stack
            continue(rest, pos + 1, list, kind, count, acc, stack, room + 1, atoms)

          _improper ->
            value(data, pos, :tail, 0, [term | acc], stack, room, atoms)
        end

      :tail ->
        list = :lists.reverse(acc, term)
        [{kind, count, acc, _pos} | stack] = stack
        continue(data, pos, list, kind, count, acc, stack, room + 1, atoms)

      :top ->
        {:ok, term, data, pos}
    end
  end

  # Atoms: the name is checked, then turned into an atom (or a binary, with
  # `atoms: :binary`). The `*_result/2` functions return `{reason}` instead
  # of failing, for callers that report the error at another offset.

  defp latin1_atom(name, {:plain, atoms}, pos), do: latin1_atom(name, atoms, pos)

  defp latin1_atom(name, atoms, pos) do
    case latin1_result(name, atoms) do
      {reason} -> fail(reason, pos)
      atom -> atom
    end
  end

  defp utf8_atom(name, {:plain, atoms}, pos), do: utf8_atom(name, atoms, pos)

  defp utf8_atom(name, atoms, pos) do
    case utf8_result(name, atoms) do
      {reason} -> fail(reason, pos)
      atom -> atom
    end
  end

  defp latin1_result(name, _atoms) when byte_size(name) > 255, do: {:atom_too_long}

  defp latin1_result(name, :existing) do
    :erlang.binary_to_existing_atom(name, :latin1)
  catch
    :error, :badarg -> {:unknown_atom}
  end

  defp latin1_result(name, :create) do
    :erlang.binary_to_existing_atom(name, :latin1)
  catch
    :error, _ -> new_atom(name, :latin1)
  end

  defp latin1_result("true", :binary), do: true
  defp latin1_result("false", :binary), do: false
  defp latin1_result("nil", :binary), do: nil
  defp latin1_result(name, :binary), do: :unicode.characters_to_binary(name, :latin1)

  defp utf8_result(name, :existing) do
    :erlang.binary_to_existing_atom(name, :utf8)
  catch
    :error, :badarg -> with :ok <- check_utf8_atom(name), do: {:unknown_atom}
  end

  defp utf8_result(name, :create) do
    :erlang.binary_to_existing_atom(name, :utf8)
  catch
    :error, _ -> with :ok <- check_utf8_atom(name), do: new_atom(name, :utf8)
  end

  defp utf8_result(name, :binary) do
    case check_utf8_atom(name) do
      :ok when name == "true" -> true
      :ok when name == "false" -> false
      :ok when name == "nil" -> nil
      :ok -> name
      error -> error
    end
  end

  # A valid name no atom has yet: made while the decode's allowance lasts.
  defp new_atom(name, encoding) do
    case Process.get(@allowance_key, 0) do
      0 ->
        {:too_many_atoms}

      left ->
        Process.put(@allowance_key, left - 1)
        :erlang.binary_to_atom(name, encoding)
    end
  catch
    # A full atom table.
    :error, _ -> {:invalid_term}
  end

  defp check_utf8_atom(name) do
    case :unicode.characters_to_binary(name) do
      valid when is_binary(valid) and byte_size(name) <= 255 ->
        :ok

      valid when is_binary(valid) ->
        if length(:unicode.characters_to_list(name)) <= 255, do: :ok, else: {:atom_too_long}

      _invalid_or_incomplete ->
        {:invalid_utf8}
    end
  end

  defp big(sign, digits, pos) do
    magnitude = :binary.decode_unsigned(digits, :little)
    if sign == 0, do: magnitude, else: -magnitude
  catch
    # Past the largest integer the runtime can hold.
    :error, _ -> fail(:invalid_term, pos)
  end

  defp bits(<<>>, 0, 0, _pos), do: <<>>

  defp bits(data, size, used, _pos) when size > 0 and used in 1..8 do
    <<bits::bitstring-size((size - 1) * 8 + used), _padding::bitstring>> = data
    bits
  end

  defp bits(_data, _size, _used, pos), do: fail(:invalid_term, pos)

  # FLOAT_EXT holds a NUL-terminated "%.20e" string. OTP accepts exactly
  # [+-]digits[.,]digits[(e|E)[+-]digits], and refuses overflow.
  defp float_ext(text, pos) do
    with [number | _] <- :binary.split(text, <<0>>),
         true <- byte_size(number) < 31,
         {:ok, canonical} <- float_text(number, :sign, []),
         {:ok, float} <- binary_to_float(canonical) do
      float
    else
      _ -> fail(:invalid_float, pos)
    end
  end

  defp float_text(<<sign, rest::binary>>, :sign, acc) when sign in ~c"+-",
    do: float_text(rest, :integer_first, [sign | acc])

  defp float_text(rest, :sign, acc), do: float_text(rest, :integer_first, acc)

  defp float_text(<<digit, rest::binary>>, state, acc)
       when digit in ?0..?9 and state in [:integer_first, :integer],
       do: float_text(rest, :integer, [digit | acc])

  defp float_text(<<point, rest::binary>>, :integer, acc) when point in ~c".,",
    do: float_text(rest, :fraction_first, [?. | acc])

  defp float_text(<<digit, rest::binary>>, state, acc)
       when digit in ?0..?9 and state in [:fraction_first, :fraction],
       do: float_text(rest, :fraction, [digit | acc])

  defp float_text(<<e, rest::binary>>, :fraction, acc) when e in ~c"eE",
    do: float_text(rest, :exponent_sign, [?e | acc])

  defp float_text(<<sign, rest::binary>>, :exponent_sign, acc) when sign in ~c"+-",
    do: float_text(rest, :exponent_first, [sign | acc])

  defp float_text(<<digit, rest::binary>>, state, acc)
       when digit in ?0..?9 and state in [:exponent_sign, :exponent_first, :exponent],
       do: float_text(rest, :exponent, [digit | acc])

  defp float_text(<<>>, state, acc) when state in [:fraction, :exponent],
    do: {:ok, acc |> :lists.reverse() |> :erlang.list_to_binary()}

  defp float_text(_rest, _state, _acc), do: :error

  defp binary_to_float(text) do
    {:ok, :erlang.binary_to_float(text)}
  catch
    :error, :badarg -> :error
  end

  # Pids, ports, references, exports and funs are checked here (structure,
  # node, atoms) and rebuilt by OTP from their exact bytes. Returns the term
  # and its size in bytes.
  defp opaque(@pid, data, pos, _room, atoms), do: with_node(data, pos, 1, 9, atoms)
  defp opaque(@new_pid, data, pos, _room, atoms), do: with_node(data, pos, 1, 12, atoms)
  defp opaque(@port, data, pos, _room, atoms), do: with_node(data, pos, 1, 5, atoms)
  defp opaque(@new_port, data, pos, _room, atoms), do: with_node(data, pos, 1, 8, atoms)
  defp opaque(@v4_port, data, pos, _room, atoms), do: with_node(data, pos, 1, 12, atoms)
  defp opaque(@reference, data, pos, _room, atoms), do: with_node(data, pos, 1, 5, atoms)

  defp opaque(@new_reference, <<_tag, ids::16, _::bits>> = data, pos, _room, atoms),
    do: with_node(data, pos, 3, 1 + 4 * ids, atoms)

  defp opaque(@newer_reference, <<_tag, ids::16, _::bits>> = data, pos, _room, atoms),
    do: with_node(data, pos, 3, 4 + 4 * ids, atoms)

  defp opaque(@export, data, pos, _room, atoms) do
    module_size = atom_size(data, 1, pos, atoms, :invalid_term)
    function_size = atom_size(data, 1 + module_size, pos, atoms, :invalid_term)
    arity_at = 1 + module_size + function_size

    # OTP takes any encoding of a small integer as the arity, and checks it.
    case data do
      <<_::binary-size(arity_at), @small_integer, _::8, _::bits>> ->
        rebuild(data, arity_at + 2, pos, atoms)

      <<_::binary-size(arity_at), @integer, _::32, _::bits>> ->
        rebuild(data, arity_at + 5, pos, atoms)

      <<_::binary-size(arity_at), @small_big, n, _::bits>> ->
        rebuild(data, arity_at + 3 + n, pos, atoms)

      <<_::binary-size(arity_at), @large_big, n::32, _::bits>> ->
        rebuild(data, arity_at + 6 + n, pos, atoms)

      <<_::binary-size(arity_at), tag, _::bits>>
      when tag not in [@small_integer, @integer, @small_big, @large_big] ->
        fail(:invalid_term, pos)

      _short ->
        fail(:truncated, pos)
    end
  end

  # A fun is read field by field, as OTP does (it ignores the Size field),
  # and is a container for depth purposes: its free variables are decoded
  # (and dropped) here to check them, then OTP rebuilds the fun.
  defp opaque(@new_fun, data, pos, room, atoms) do
    free =
      case data do
        <<_::binary-size(@fun_module_at - 4), free::32, _::bits>> -> free
        _short -> fail(:truncated, pos)
      end

    # OTP refuses more free variables than a function may have arguments;
    # checked before the module, as the core decoder does.
    if free > @max_fun_free_variables, do: fail(:invalid_term, pos)

    module_size = atom_size(data, @fun_module_at, pos, atoms, :invalid_term)
    at = @fun_module_at + module_size
    <<_::binary-size(at), fields::bits>> = data
    # OldIndex, OldUniq and Pid, then the free variables.
    {fields, fields_pos} = skip_terms(fields, pos + at, 3, room, atoms)
    if free > 0 and room == 0, do: fail(:depth_exceeded, pos)
    {_rest, end_pos} = skip_terms(fields, fields_pos, free, room - 1, atoms)
    rebuild(data, end_pos - pos, pos, atoms)
  end

  defp opaque(_tag, _short, pos, _room, _atoms), do: fail(:truncated, pos)

  defp skip_terms(data, pos, 0, _room, _atoms), do: {data, pos}

  defp skip_terms(data, pos, count, room, atoms) do
    {:ok, _term, data, pos} = value(data, pos, :top, 1, [], [], room, atoms)
    skip_terms(data, pos, count - 1, room, atoms)
  end

  defp with_node(data, pos, node_at, fixed_size, atoms) do
    node_size = atom_size(data, node_at, pos, atoms, :bad_node)
    rebuild(data, node_at + node_size + fixed_size, pos, atoms)
  end

  # The size of the atom at `at` inside `data`, once it is known to be an
  # acceptable atom that exists (or was created, with `atoms: :create`).
  defp atom_size(data, at, pos, atoms, not_an_atom) do
    mode = if atoms == :create, do: :create, else: :existing

    {size, result} =
      case data do
        <<_::binary-size(at), @atom, n::16, name::binary-size(n), _::bits>> ->
          {3 + n, latin1_result(name, mode)}

        <<_::binary-size(at), @small_atom, n, name::binary-size(n), _::bits>> ->
          {2 + n, latin1_result(name, mode)}

        <<_::binary-size(at), @atom_utf8, n::16, name::binary-size(n), _::bits>> ->
          {3 + n, utf8_result(name, mode)}

        <<_::binary-size(at), @small_atom_utf8, n, name::binary-size(n), _::bits>> ->
          {2 + n, utf8_result(name, mode)}

        <<_::binary-size(at), tag, _::bits>>
        when tag not in [@atom, @small_atom, @atom_utf8, @small_atom_utf8] ->
          fail(not_an_atom, pos)

        _short ->
          fail(:truncated, pos)
      end

    case result do
      {reason} -> fail(reason, pos + at)
      _atom -> size
    end
  end

  defp rebuild(data, size, pos, atoms) do
    if byte_size(data) < size, do: fail(:truncated, pos)
    slice = binary_part(data, 0, size)
    options = if atoms == :create, do: [:used], else: [:safe, :used]

    case safe_binary_to_term(<<@version, slice::binary>>, options) do
      # Decoded data never holds the fragments' seal (Switchboard.Erlpack.Fragment).
      {term, used} when used == size + 1 and is_reference(term) ->
        if Fragment.sealed?(%Fragment{bytes: "", seal: term}), do: fail(:invalid_term, pos)
        {term, size}

      {term, used} when used == size + 1 ->
        {term, size}

      _refused ->
        fail(:invalid_term, pos)
    end
  end

  defp safe_binary_to_term(binary, options) do
    :erlang.binary_to_term(binary, options)
  catch
    :error, _ -> :error
  end

  ## Compressed terms

  # A declared size over the limit is refused at once: the data would either
  # inflate past the limit or not to the declared size.
  defp decode_compressed(_zdata, declared, _opts, max_inflated, _trailing)
       when declared > max_inflated,
       do: {:error, {:decompressed_too_large, 1}}

  defp decode_compressed(zdata, declared, {max_depth, atoms}, max_inflated, trailing) do
    with {:ok, inflated} <- inflate(zdata, declared, max_inflated),
         {:ok, term, <<>>, _pos} <- run(inflated, 0, max_depth, atoms) do
      case stream_end(zdata, inflated) do
        size when trailing == :allow ->
          {:ok, term, binary_part(zdata, size, byte_size(zdata) - size)}

        size when size == byte_size(zdata) ->
          {:ok, term}

        size ->
          {:error, {:trailing_data, 6 + size}}
      end
    else
      {:ok, _term, _rest, _pos} -> {:error, {:trailing_data, 1}}
      {:error, {reason, _offset}} -> {:error, {reason, 1}}
      {:error, reason} -> {:error, {reason, 1}}
    end
  end

  # The limit applies to what the data actually inflates to: inflation goes
  # in bounded steps and stops as soon as the output passes the limit. The
  # declared size is only compared with the result.
  defp inflate(zdata, declared, max_inflated) do
    case inflate_at_most(zdata, max_inflated) do
      {:ok, chunks, ^declared} -> {:ok, IO.iodata_to_binary(chunks)}
      {:ok, _chunks, _other_size} -> {:error, :bad_compression}
      :too_large -> {:error, :decompressed_too_large}
      :incomplete -> {:error, :truncated}
      :corrupt -> {:error, :bad_compression}
    end
  end

  defp inflate_at_most(zdata, limit) do
    zstream = :zlib.open()

    try do
      :ok = :zlib.inflateInit(zstream)

      case inflate_loop(zstream, :zlib.safeInflate(zstream, zdata), [], 0, limit) do
        {:ok, _chunks, _size} = inflated ->
          if stream_complete?(zstream), do: inflated, else: :incomplete

        :too_large ->
          :too_large
      end
    catch
      :error, _ -> :corrupt
    after
      :zlib.close(zstream)
    end
  end

  # Once all input is used, inflateEnd raises unless the stream has ended.
  defp stream_complete?(zstream) do
    :zlib.inflateEnd(zstream) == :ok
  catch
    :error, _ -> false
  end

  defp inflate_loop(zstream, {status, chunk}, acc, size, limit) do
    size = size + IO.iodata_length(chunk)

    cond do
      size > limit -> :too_large
      status == :finished -> {:ok, [acc | chunk], size}
      true -> inflate_loop(zstream, :zlib.safeInflate(zstream, []), [acc | chunk], size, limit)
    end
  end

  # Where the zlib stream ends inside `zdata` (zlib ignores what follows, and
  # Erlang's zlib does not say how much input it used). The stream ends with
  # the Adler-32 of the output, so its end is one of the places where those
  # four bytes occur; the first place whose prefix inflates completely is it.
  @max_candidates 64
  defp stream_end(zdata, inflated) do
    size = byte_size(zdata)
    trailer = <<:erlang.adler32(inflated)::32>>

    case :binary.match(zdata, trailer) do
      {at, 4} when at + 4 == size ->
        size

      {at, 4} ->
        candidates = candidates(zdata, trailer, at, [])
        first_complete(zdata, candidates, byte_size(inflated))

      :nomatch ->
        size
    end
  end

  # End offsets of every (possibly overlapping) occurrence, up to a cap.
  defp candidates(zdata, trailer, at, acc) when length(acc) < @max_candidates do
    scope = {at + 1, byte_size(zdata) - at - 1}

    case :binary.match(zdata, trailer, scope: scope) do
      {next, 4} -> candidates(zdata, trailer, next, [at + 4 | acc])
      :nomatch -> Enum.reverse([at + 4 | acc])
    end
  end

  defp candidates(zdata, _trailer, _at, _acc), do: {:range, 2, byte_size(zdata)}

  defp first_complete(zdata, {:range, low, high}, limit),
    do: bisect(zdata, low, high, limit, & &1)

  defp first_complete(zdata, candidates, limit) do
    candidates = List.to_tuple(candidates)
    index = bisect(zdata, 0, tuple_size(candidates) - 1, limit, &elem(candidates, &1))
    elem(candidates, index)
  end

  # The smallest index in low..high whose prefix is a complete stream,
  # knowing that high's is.
  defp bisect(_zdata, low, high, _limit, _at) when low >= high, do: high

  defp bisect(zdata, low, high, limit, at) do
    middle = div(low + high, 2)

    case inflate_at_most(binary_part(zdata, 0, at.(middle)), limit) do
      {:ok, _chunks, _size} -> bisect(zdata, low, middle, limit, at)
      _incomplete -> bisect(zdata, middle + 1, high, limit, at)
    end
  end
end
