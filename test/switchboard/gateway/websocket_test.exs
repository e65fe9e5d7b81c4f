defmodule Switchboard.Gateway.WebSocketTest do
  use ExUnit.Case, async: true
  use Switchboard.Property

  import Bitwise

  alias Switchboard.Gateway.WebSocket
  alias Switchboard.Test.RawClient

  doctest Switchboard.Gateway.WebSocket

  defp parse_all(ws, chunks) do
    Enum.reduce_while(chunks, {ws, []}, fn chunk, {ws, events} ->
      case WebSocket.parse(ws, chunk) do
        {:ok, new, ws} -> {:cont, {ws, events ++ new}}
        {:error, failure, new, _ws} -> {:halt, {:error, failure, events ++ new}}
      end
    end)
  end

  defp split(binary, cuts) do
    points = cuts |> Enum.map(&rem(&1, byte_size(binary) + 1)) |> Enum.sort() |> Enum.uniq()

    {parts, last, _} =
      Enum.reduce(points, {[], 0, binary}, fn point, {parts, from, bin} ->
        {[binary_part(bin, from, point - from) | parts], point, bin}
      end)

    Enum.reverse([binary_part(binary, last, byte_size(binary) - last) | parts])
  end

  property_test "frames cut anywhere parse to the same messages", numtests: 200 do
    forall {texts, cuts} <- {list(:proper_unicode.utf8()), list(non_neg_integer())} do
      texts = Enum.map(texts, &IO.iodata_to_binary/1)
      stream = IO.iodata_to_binary(for t <- texts, do: RawClient.frame(1, t))

      {_ws, events} =
        parse_all(
          WebSocket.new(max_frame_size: 1 <<< 20, max_message_size: 1 <<< 20),
          split(stream, cuts)
        )

      events == Enum.map(texts, &{:text, &1})
    end
  end

  property_test "any bytes: events or a close code, never a crash or a runaway buffer",
    numtests: 500 do
    forall chunks <- list(binary()) do
      case parse_all(WebSocket.new(), chunks) do
        {:error, {reason, code}, _events} ->
          reason in [:protocol_error, :invalid_utf8, :too_big] and code in [1002, 1007, 1009]

        {ws, _events} ->
          byte_size(ws.buffer) <= 4096 + 14
      end
    end
  end

  test "limits are checked from the header" do
    ws = WebSocket.new(max_frame_size: 10, max_message_size: 15)

    assert {:error, {:too_big, 1009}, [], _} =
             WebSocket.parse(ws, RawClient.frame(1, String.duplicate("a", 11)))

    fragments =
      RawClient.frame(1, "aaaaaaaa", fin: false) <> RawClient.frame(0, "bbbbbbbb", fin: false)

    assert {:error, {:too_big, 1009}, [], _} = WebSocket.parse(ws, fragments)
  end

  test "control frames: ping, pong, close with and without a code" do
    ws = WebSocket.new()

    frames =
      RawClient.frame(9, "p") <>
        RawClient.frame(10, "q") <>
        RawClient.frame(8, <<4000::16, "r">>) <> RawClient.frame(8, "")

    assert {:ok, [{:ping, "p"}, {:pong, "q"}, {:close, 4000, "r"}, {:close, nil, ""}], _} =
             WebSocket.parse(ws, frames)
  end

  test "violations: unmasked, bad UTF-8 (also split across fragments), RSV bits, long ping" do
    ws = WebSocket.new()

    assert {:error, {:protocol_error, 1002}, _, _} =
             WebSocket.parse(ws, RawClient.frame(1, "x", masked: false))

    assert {:error, {:invalid_utf8, 1007}, _, _} =
             WebSocket.parse(ws, RawClient.frame(1, <<0xC3>>))

    split_ok = RawClient.frame(1, <<0xC3>>, fin: false) <> RawClient.frame(0, <<0xA9>>)
    assert {:ok, [{:text, "é"}], _} = WebSocket.parse(ws, split_ok)

    <<first, rest::binary>> = RawClient.frame(1, "x")

    assert {:error, {:protocol_error, 1002}, _, _} =
             WebSocket.parse(ws, <<first ||| 0x40, rest::binary>>)

    assert {:error, {:protocol_error, 1002}, _, _} =
             WebSocket.parse(ws, RawClient.frame(9, String.duplicate("a", 126)))
  end

  test "server frames use the shortest length form" do
    for size <- [0, 125, 126, 65_535, 65_536] do
      frame = IO.iodata_to_binary(WebSocket.frame(:binary, :binary.copy("a", size)))
      header = byte_size(frame) - size
      assert header == if(size < 126, do: 2, else: if(size < 65_536, do: 4, else: 10))
    end

    assert <<0x88, 6, 4004::16, "abcd">> = WebSocket.close_frame(4004, "abcd")
  end
end
