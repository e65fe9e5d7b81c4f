defmodule Switchboard.CodecTest do
  use ExUnit.Case, async: true

  import Bitwise

  alias Switchboard.Codec.{ETF, JSON}

  doctest ETF
  doctest ETF.Pure
  doctest JSON
  doctest JSON.Pure

  test "frames are byte-identical to encoding the whole envelope, for every size of sequence number" do
    data = %{"content" => String.duplicate("x", 400), "n" => [1, 2.5, :ok, nil]}

    for codec <- [ETF, ETF.Pure],
        type <- ["MESSAGE_CREATE", "T"],
        seq <- [0, 1, 255, 256, 70_000, 2_147_483_647, 2_147_483_648, 1 <<< 70] do
      frame = IO.iodata_to_binary(codec.frame(codec.prepare(type, data), seq))
      assert frame == :erlang.term_to_binary(%{"op" => 0, "t" => type, "s" => seq, "d" => data})
    end
  end

  test "the prepared prefix is shared, not copied, by every frame" do
    {prefix, _} =
      prepared = ETF.prepare("MESSAGE_CREATE", %{"content" => String.duplicate("x", 400)})

    assert [^prefix, _, _] = ETF.frame(prepared, 5)
    # Over 64 bytes: a reference-counted binary, shared by messages and frames.
    assert byte_size(prefix) > 64
  end

  describe "JSON" do
    test "frames decode to the whole envelope, byte-identical between the twins" do
      data = %{"content" => String.duplicate("é\"x", 100), "n" => [1, 2.5, true, nil]}

      for type <- ["MESSAGE_CREATE", "T\"Q"], seq <- [0, 1, 255, 70_000, 1 <<< 70] do
        native = IO.iodata_to_binary(JSON.frame(JSON.prepare(type, data), seq))
        assert native == IO.iodata_to_binary(JSON.Pure.frame(JSON.Pure.prepare(type, data), seq))

        assert Switchboard.Json.decode!(native) ==
                 %{"op" => 0, "t" => type, "s" => seq, "d" => data}

        assert String.starts_with?(native, ~s({"op":0,"t":))
      end
    end

    test "the payload is encoded once and shared by every frame" do
      {_prefix, [_, payload, _]} =
        prepared = JSON.prepare("MESSAGE_CREATE", %{"content" => String.duplicate("x", 400)})

      assert [_, "5", [_, ^payload, _]] = JSON.frame(prepared, 5)
      assert byte_size(payload) > 64
    end

    test "a term JSON cannot encode is refused by both twins" do
      for codec <- [JSON, JSON.Pure] do
        assert_raise Switchboard.Json.EncodeError, fn ->
          codec.prepare("T", %{"pid" => self()})
        end
      end
    end
  end
end
