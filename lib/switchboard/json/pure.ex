defmodule Switchboard.Json.Pure do
  @moduledoc """
  JSON codec in pure Elixir: the twin of `Switchboard.Json`, with the same
  API and results byte for byte (see `Switchboard.Json.Codec` for the
  contract); the baseline in benchmarks and the oracle in tests.

  Written the way Jason is: encoding builds iodata and escapes strings in
  runs (a plain run is one `binary_part/3` of the original), decoding
  matches on the binary with one match context per string and number, and
  strings without escapes are sub-binaries of the input.
  """

  @behaviour Switchboard.Json.Codec

  import Bitwise

  alias Switchboard.Json.{DecodeError, EncodeError, Fragment, Options}

  @max_integer_digits 4300

  ## Encoding

  @impl true
  def encode(term, opts \\ []) do
    case encode_to_iodata(term, opts) do
      {:ok, iodata} -> {:ok, IO.iodata_to_binary(iodata)}
      error -> error
    end
  end

  @impl true
  def encode!(term, opts \\ []), do: term |> encode(opts) |> unwrap!()

  @impl true
  def encode_to_iodata(term, opts \\ []) do
    {escape, strict} = Options.encode(opts)
    {:ok, value(term, {escape, strict, Fragment.seal()})}
  catch
    {:json_encode, reason} -> {:error, EncodeError.new(reason)}
  end

  @impl true
  def encode_to_iodata!(term, opts \\ []), do: term |> encode_to_iodata(opts) |> unwrap!()

  @impl true
  def fragment(term, opts \\ []), do: term |> encode!(opts) |> Fragment.seal()

  defp value(binary, {escape, _, _}) when is_binary(binary), do: string(binary, escape)
  defp value(integer, _) when is_integer(integer), do: Integer.to_string(integer)
  defp value(float, _) when is_float(float), do: :io_lib_format.fwrite_g(float)
  defp value(nil, _), do: "null"
  defp value(true, _), do: "true"
  defp value(false, _), do: "false"
  defp value(atom, {escape, _, _}) when is_atom(atom), do: string(Atom.to_string(atom), escape)
  defp value([], _), do: "[]"
  defp value([head | tail] = list, opts), do: [?[, value(head, opts) | elements(tail, list, opts)]

  defp value(%{__struct__: Fragment, encoded: encoded, seal: seal}, {_, _, seal})
       when is_binary(encoded),
       do: encoded

  defp value(%{__struct__: Fragment} = forged, _), do: error({:invalid_fragment, forged})
  defp value(%{__struct__: _} = struct, _), do: error({:unsupported, struct})
  defp value(map, _) when map == %{}, do: "{}"
  defp value(map, opts) when is_map(map), do: object(map, opts)
  defp value(other, _), do: error({:unsupported, other})

  defp elements([], _list, _opts), do: [?]]

  defp elements([head | tail], list, opts),
    do: [?,, value(head, opts) | elements(tail, list, opts)]

  defp elements(_improper, list, _opts), do: error({:improper_list, list})

  # Pairs in the order the runtime iterates them (:maps.iterator/1, and
  # enif_map_iterator in the native encoder): :maps.to_list/1's order for a
  # flat map (up to 32 keys, sorted), the reverse of it for a hash map.
  defp pairs_in_order(map) when map_size(map) <= 32, do: :maps.to_list(map)
  defp pairs_in_order(map), do: :lists.reverse(:maps.to_list(map))

  defp object(map, {escape, false, _} = opts) do
    [{key, item} | rest] = pairs_in_order(map)
    [?{, key(key, escape), ?:, value(item, opts) | pairs(rest, opts)]
  end

  defp object(map, {escape, true, _} = opts) do
    # Each key, then its value, as the native encoder meets them.
    {body, keys} =
      Enum.map_reduce(pairs_in_order(map), [], fn {key, item}, keys ->
        key = IO.iodata_to_binary(key(key, escape))
        {[key, ?: | value(item, opts)], [key | keys]}
      end)

    check_unique(Enum.sort(keys))
    [?{, Enum.intersperse(body, ?,), ?}]
  end

  defp pairs([], _opts), do: [?}]

  defp pairs([{key, item} | rest], {escape, _, _} = opts),
    do: [?,, key(key, escape), ?:, value(item, opts) | pairs(rest, opts)]

  defp check_unique([same, same | _]),
    do: error({:duplicate_key, binary_part(same, 1, byte_size(same) - 2)})

  defp check_unique([_ | rest]), do: check_unique(rest)
  defp check_unique([]), do: :ok

  defp key(binary, escape) when is_binary(binary), do: string(binary, escape)
  defp key(atom, escape) when is_atom(atom), do: string(Atom.to_string(atom), escape)
  defp key(integer, _escape) when is_integer(integer), do: [?", Integer.to_string(integer), ?"]
  defp key(other, _escape), do: error({:invalid_key, other})

  defp string(binary, escape), do: [?", escape(binary, binary, 0, 0, escape, []), ?"]

  # escape(rest, original, skip, length, mode, acc): the plain run
  # original[skip, skip + length) is not yet in acc.
  defp escape(<<byte, rest::bits>>, original, skip, length, mode, acc)
       when byte >= 0x20 and byte < 0x80 and byte != ?" and byte != ?\\ and
              (mode != :html_safe or (byte != ?/ and byte != ?<)),
       do: escape(rest, original, skip, length + 1, mode, acc)

  defp escape(<<byte, rest::bits>>, original, skip, length, mode, acc) when byte < 0x80 do
    acc = [acc, binary_part(original, skip, length) | ascii_escape(byte)]
    escape(rest, original, skip + length + 1, 0, mode, acc)
  end

  defp escape(<<char::utf8, rest::bits>>, original, skip, length, mode, acc) do
    size = utf8_size(char)

    cond do
      mode == :unicode_safe ->
        acc = [acc, binary_part(original, skip, length) | unicode_escape(char)]
        escape(rest, original, skip + length + size, 0, mode, acc)

      mode != :json and (char == 0x2028 or char == 0x2029) ->
        acc = [acc, binary_part(original, skip, length) | unicode_escape(char)]
        escape(rest, original, skip + length + size, 0, mode, acc)

      true ->
        escape(rest, original, skip, length + size, mode, acc)
    end
  end

  defp escape(<<>>, original, skip, length, _mode, acc),
    do: [acc | binary_part(original, skip, length)]

  defp escape(<<byte, _::bits>>, original, _skip, _length, _mode, _acc),
    do: error({:invalid_byte, byte, original})

  defp utf8_size(char) when char < 0x800, do: 2
  defp utf8_size(char) when char < 0x10000, do: 3
  defp utf8_size(_char), do: 4

  for {byte, escaped} <- Enum.zip(~c"\b\t\n\f\r\"\\/", ~c"btnfr\"\\/") do
    defp ascii_escape(unquote(byte)), do: unquote(<<?\\, escaped>>)
  end

  defp ascii_escape(byte), do: unicode_escape(byte)

  defp unicode_escape(char) when char < 0x10000, do: ["\\u" | hex4(char)]

  defp unicode_escape(char) do
    offset = char - 0x10000
    ["\\u", hex4(0xD800 + (offset >>> 10)), "\\u" | hex4(0xDC00 + (offset &&& 0x3FF))]
  end

  defp hex4(unit), do: unit |> Integer.to_string(16) |> String.pad_leading(4, "0")

  defp error(reason), do: throw({:json_encode, reason})

  ## Decoding

  @impl true
  def decode(input, opts \\ []) do
    {atom_keys, max_depth, max_size} = Options.decode(opts)
    input = IO.iodata_to_binary(input)

    if byte_size(input) > max_size do
      {:error, %DecodeError{reason: :max_size, position: 0, data: input}}
    else
      parse(input, {atom_keys, max_depth, input})
    end
  end

  @impl true
  def decode!(input, opts \\ []), do: input |> decode(opts) |> unwrap!()

  defp parse(input, state) do
    {result, rest} = parse_value(skip_space(input), 1, state)

    case skip_space(rest) do
      <<>> -> {:ok, result}
      rest -> fail(:unexpected_byte, rest, state)
    end
  catch
    {:json_decode, reason, position, token} ->
      {:error,
       %DecodeError{reason: reason, position: position, data: elem(state, 2), token: token}}
  end

  defp skip_space(<<byte, rest::bits>>) when byte in ~c" \t\n\r", do: skip_space(rest)
  defp skip_space(rest), do: rest

  # parse_value(at, depth, state) -> {value, rest}; `at` starts at the value.
  defp parse_value(<<?", rest::bits>> = at, _depth, state), do: parse_string(rest, at, state)

  defp parse_value(<<?{, rest::bits>> = at, depth, {_, max_depth, _} = state) do
    if depth > max_depth, do: fail(:max_depth, at, state)

    case skip_space(rest) do
      <<?}, rest::bits>> -> {%{}, rest}
      rest -> parse_members(rest, depth, state, [])
    end
  end

  defp parse_value(<<?[, rest::bits>> = at, depth, {_, max_depth, _} = state) do
    if depth > max_depth, do: fail(:max_depth, at, state)

    case skip_space(rest) do
      <<?], rest::bits>> -> {[], rest}
      rest -> parse_elements(rest, depth, state, [])
    end
  end

  defp parse_value(<<?t, rest::bits>>, _depth, state), do: literal(rest, "rue", true, state)
  defp parse_value(<<?f, rest::bits>>, _depth, state), do: literal(rest, "alse", false, state)
  defp parse_value(<<?n, rest::bits>>, _depth, state), do: literal(rest, "ull", nil, state)

  defp parse_value(<<byte, _::bits>> = at, _depth, state) when byte == ?- or byte in ?0..?9,
    do: parse_number(at, state)

  defp parse_value(at, _depth, state), do: unexpected(at, state)

  defp literal(rest, word, value, state) do
    size = byte_size(word)

    case rest do
      <<^word::binary-size(size), rest::bits>> -> {value, rest}
      _ -> literal_mismatch(rest, word, state)
    end
  end

  defp literal_mismatch(<<same, rest::bits>>, <<same, word::bits>>, state),
    do: literal_mismatch(rest, word, state)

  defp literal_mismatch(rest, _word, state), do: unexpected(rest, state)

  defp parse_elements(at, depth, state, acc) do
    {item, rest} = parse_value(at, depth + 1, state)

    case skip_space(rest) do
      <<?,, rest::bits>> -> parse_elements(skip_space(rest), depth, state, [item | acc])
      <<?], rest::bits>> -> {:lists.reverse(acc, [item]), rest}
      rest -> unexpected(rest, state)
    end
  end

  defp parse_members(<<?", rest::bits>> = at, depth, {atom_keys, _, _} = state, acc) do
    {key, rest} = parse_string(rest, at, state)
    key = if atom_keys, do: existing_atom(key, at, state), else: key

    rest =
      case skip_space(rest) do
        <<?:, rest::bits>> -> skip_space(rest)
        rest -> unexpected(rest, state)
      end

    {item, rest} = parse_value(rest, depth + 1, state)
    acc = [{key, item} | acc]

    case skip_space(rest) do
      <<?,, rest::bits>> -> parse_members(skip_space(rest), depth, state, acc)
      # Later pairs win: :maps.from_list/1 keeps the last of equal keys.
      <<?}, rest::bits>> -> {:maps.from_list(:lists.reverse(acc)), rest}
      rest -> unexpected(rest, state)
    end
  end

  defp parse_members(at, _depth, state, _acc), do: unexpected(at, state)

  defp existing_atom(key, at, state) do
    String.to_existing_atom(key)
  rescue
    ArgumentError -> fail(:unknown_atom, at, state, key)
  end

  ## Strings

  # `quote` is the text from the opening quote, `rest` just after it.
  defp parse_string(rest, quote, {_, _, input} = state) do
    start = byte_size(input) - byte_size(rest)
    plain(rest, input, start, 0, quote, state)
  end

  # A run without escapes: input[start, start + length).
  defp plain(<<?", rest::bits>>, input, start, length, _quote, _state),
    do: {binary_part(input, start, length), rest}

  defp plain(<<?\\, _::bits>> = rest, input, start, length, _quote, state),
    do: escaped(rest, input, [binary_part(input, start, length)], state)

  defp plain(<<byte, rest::bits>>, input, start, length, quote, state)
       when byte >= 0x20 and byte < 0x80,
       do: plain(rest, input, start, length + 1, quote, state)

  defp plain(<<char::utf8, rest::bits>>, input, start, length, quote, state) when char >= 0x80,
    do: plain(rest, input, start, length + utf8_size(char), quote, state)

  defp plain(rest, _input, _start, _length, _quote, state), do: string_error(rest, state)

  # After the first escape the string is built as iodata.
  defp escaped(<<?", rest::bits>>, _input, acc, _state), do: {IO.iodata_to_binary(acc), rest}

  defp escaped(<<?\\, rest::bits>> = at, input, acc, state) do
    {decoded, rest} = unescape(rest, at, state)
    escaped(rest, input, [acc | decoded], state)
  end

  defp escaped(<<byte, _::bits>> = at, input, acc, state) when byte >= 0x20 and byte < 0x80 do
    {length, rest} = run(at, 0)
    escaped(rest, input, [acc | binary_part(at, 0, length)], state)
  end

  defp escaped(<<char::utf8, rest::bits>>, input, acc, state) when char >= 0x80,
    do: escaped(rest, input, [acc | <<char::utf8>>], state)

  defp escaped(rest, _input, _acc, state), do: string_error(rest, state)

  # The plain ASCII run at the start of the text, and what follows it.
  defp run(<<byte, rest::bits>>, length)
       when byte >= 0x20 and byte < 0x80 and byte != ?" and byte != ?\\,
       do: run(rest, length + 1)

  defp run(rest, length), do: {length, rest}

  defp string_error(<<>>, state), do: fail(:unexpected_end, <<>>, state)
  defp string_error(<<byte, _::bits>> = at, state) when byte < 0x20, do: unexpected(at, state)
  defp string_error(at, state), do: fail(:invalid_utf8, at, state)

  for {escaped, byte} <- Enum.zip(~c"\"\\/bfnrt", ~c"\"\\/\b\f\n\r\t") do
    defp unescape(<<unquote(escaped), rest::bits>>, _at, _state), do: {<<unquote(byte)>>, rest}
  end

  # `at` is the text from the backslash on.
  defp unescape(<<?u, rest::bits>>, at, state) do
    {unit, rest} = hex_digits(rest, 0, 0, at, 2, state)

    cond do
      unit in 0xDC00..0xDFFF ->
        fail(:lone_surrogate, at, state, binary_part(at, 0, 6))

      unit in 0xD800..0xDBFF ->
        low_surrogate(rest, unit, at, state)

      true ->
        {<<unit::utf8>>, rest}
    end
  end

  defp unescape(<<>>, _at, state), do: fail(:unexpected_end, <<>>, state)
  defp unescape(_rest, at, state), do: fail(:invalid_escape, at, state, binary_part(at, 0, 2))

  defp low_surrogate(<<?\\, ?u, rest::bits>>, high, at, state) do
    {low, rest} = hex_digits(rest, 0, 0, at, 8, state)

    if low in 0xDC00..0xDFFF,
      do: {<<0x10000 + ((high - 0xD800) <<< 10) + (low - 0xDC00)::utf8>>, rest},
      else: fail(:lone_surrogate, at, state, binary_part(at, 0, 6))
  end

  defp low_surrogate(_rest, _high, at, state),
    do: fail(:lone_surrogate, at, state, binary_part(at, 0, 6))

  # Four hex digits starting `offset` bytes after the backslash at `at`; a
  # bad digit's error names the escape from the backslash through it.
  defp hex_digits(rest, 4, unit, _at, _offset, _state), do: {unit, rest}

  defp hex_digits(<<byte, rest::bits>>, count, unit, at, offset, state) do
    case hex_value(byte) do
      nil -> fail(:invalid_escape, at, state, binary_part(at, 0, offset + count + 1))
      digit -> hex_digits(rest, count + 1, unit * 16 + digit, at, offset, state)
    end
  end

  defp hex_digits(<<>>, _count, _unit, _at, _offset, state),
    do: fail(:unexpected_end, <<>>, state)

  defp hex_value(byte) when byte in ?0..?9, do: byte - ?0
  defp hex_value(byte) when byte in ?a..?f, do: byte - ?a + 10
  defp hex_value(byte) when byte in ?A..?F, do: byte - ?A + 10
  defp hex_value(_byte), do: nil

  ## Numbers

  defp parse_number(at, state) do
    {sign_length, rest} =
      case at do
        <<?-, rest::bits>> -> {1, rest}
        _ -> {0, at}
      end

    {digits, rest} =
      case rest do
        <<?0, rest::bits>> -> {1, rest}
        <<byte, _::bits>> when byte in ?1..?9 -> digits(rest, 0)
        rest -> unexpected(rest, state)
      end

    {fraction, rest} =
      case rest do
        <<?., rest::bits>> -> required_digits(rest, state) |> then(fn {n, r} -> {n + 1, r} end)
        _ -> {0, rest}
      end

    {exponent, rest} =
      case rest do
        <<e, sign, rest::bits>> when e in ~c"eE" and sign in ~c"+-" ->
          required_digits(rest, state) |> then(fn {n, r} -> {n + 2, r} end)

        <<e, rest::bits>> when e in ~c"eE" ->
          required_digits(rest, state) |> then(fn {n, r} -> {n + 1, r} end)

        _ ->
          {0, rest}
      end

    token = binary_part(at, 0, sign_length + digits + fraction + exponent)

    cond do
      fraction == 0 and exponent == 0 and digits > @max_integer_digits ->
        fail(:number_too_large, at, state)

      fraction == 0 and exponent == 0 ->
        {String.to_integer(token), rest}

      true ->
        {to_float(token, fraction, digits + sign_length, at, state), rest}
    end
  end

  defp digits(<<byte, rest::bits>>, count) when byte in ?0..?9, do: digits(rest, count + 1)
  defp digits(rest, count), do: {count, rest}

  defp required_digits(<<byte, _::bits>> = rest, _state) when byte in ?0..?9, do: digits(rest, 0)
  defp required_digits(rest, state), do: unexpected(rest, state)

  # :erlang.binary_to_float/1 wants digits on both sides of a point.
  defp to_float(token, 0, integral, at, state) do
    <<mantissa::binary-size(integral), exponent::binary>> = token
    to_float(mantissa <> ".0" <> exponent, 2, integral, at, state)
  end

  defp to_float(token, _fraction, _integral, at, state) do
    :erlang.binary_to_float(token)
  rescue
    # Overflow: binary_to_float refuses what a double cannot hold.
    ArgumentError -> fail(:number_too_large, at, state)
  end

  ## Errors

  defp unexpected(<<>>, state), do: fail(:unexpected_end, <<>>, state)
  defp unexpected(at, state), do: fail(:unexpected_byte, at, state)

  # `at` is the input from the offending token on.
  defp fail(reason, at, {_, _, input}, token \\ nil),
    do: throw({:json_decode, reason, byte_size(input) - byte_size(at), token})

  defp unwrap!({:ok, result}), do: result
  defp unwrap!({:error, error}), do: raise(error)
end
