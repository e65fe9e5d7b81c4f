defmodule Switchboard.Test.JSON do
  @moduledoc false
  # A JSON decoder, just enough for test/fixtures/erlpack_vectors.json
  # (there is no JSON library here). Shared by the Erlpack test suites.
  import Bitwise, only: [<<<: 2]

  def decode!(text) do
    {value, rest} = json_value(json_skip(text))
    "" = json_skip(rest)
    value
  end

  defp json_skip(<<c, rest::binary>>) when c in ~c" \t\r\n", do: json_skip(rest)
  defp json_skip(text), do: text

  defp json_value("{" <> rest), do: json_object(json_skip(rest), %{})
  defp json_value("[" <> rest), do: json_array(json_skip(rest), [])
  defp json_value("\"" <> rest), do: json_string(rest, [])
  defp json_value("true" <> rest), do: {true, rest}
  defp json_value("false" <> rest), do: {false, rest}
  defp json_value("null" <> rest), do: {nil, rest}

  defp json_value(text) do
    [number] = Regex.run(~r/^-?\d+(\.\d+)?([eE][-+]?\d+)?/, text, capture: :first)
    rest = binary_part(text, byte_size(number), byte_size(text) - byte_size(number))

    if number =~ ~r/[.eE]/,
      do: {Float.parse(number) |> elem(0), rest},
      else: {String.to_integer(number), rest}
  end

  defp json_object("}" <> rest, acc), do: {acc, rest}

  defp json_object(text, acc) do
    {key, rest} = json_value(text)
    ":" <> rest = json_skip(rest)
    {value, rest} = json_value(json_skip(rest))
    acc = Map.put(acc, key, value)

    case json_skip(rest) do
      "," <> rest -> json_object(json_skip(rest), acc)
      "}" <> rest -> {acc, rest}
    end
  end

  defp json_array("]" <> rest, []), do: {[], rest}

  defp json_array(text, acc) do
    {value, rest} = json_value(text)

    case json_skip(rest) do
      "," <> rest -> json_array(json_skip(rest), [value | acc])
      "]" <> rest -> {Enum.reverse([value | acc]), rest}
    end
  end

  defp json_string("\"" <> rest, acc), do: {IO.iodata_to_binary(Enum.reverse(acc)), rest}

  defp json_string("\\u" <> <<hex::binary-size(4), rest::binary>>, acc) do
    case {String.to_integer(hex, 16), rest} do
      {high, "\\u" <> <<low::binary-size(4), rest::binary>>} when high in 0xD800..0xDBFF ->
        low = String.to_integer(low, 16)
        code = 0x10000 + ((high - 0xD800) <<< 10) + (low - 0xDC00)
        json_string(rest, [<<code::utf8>> | acc])

      {code, rest} ->
        json_string(rest, [<<code::utf8>> | acc])
    end
  end

  defp json_string(<<"\\", escaped, rest::binary>>, acc) do
    char =
      case escaped do
        ?b -> ?\b
        ?f -> ?\f
        ?n -> ?\n
        ?r -> ?\r
        ?t -> ?\t
        other -> other
      end

    json_string(rest, [char | acc])
  end

  defp json_string(<<char, rest::binary>>, acc), do: json_string(rest, [char | acc])
end
