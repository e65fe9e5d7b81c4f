defmodule Switchboard.CodecTest do
  use ExUnit.Case, async: true

  import Bitwise

  alias Switchboard.Codec.ETF

  doctest ETF
  doctest ETF.Pure

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
end
