defmodule Switchboard.ZstdTest do
  use ExUnit.Case, async: true

  alias Switchboard.Zstd

  doctest Switchboard.Zstd

  test "Discord's parameters by default; the context lives in counted native memory" do
    before = Zstd.native_memory()
    stream = Zstd.compress_stream()
    _ = Zstd.compress(stream, String.duplicate("gateway ", 100))
    info = Zstd.info(stream)
    assert info.bytes_in == 800
    assert info.bytes_out < 100
    # A 2^18 window and 2^16-entry tables: more than the window, well under 2 MiB.
    assert info.context_bytes > 262_144 and info.context_bytes < 2_097_152
    now = Zstd.native_memory()
    assert now.contexts >= before.contexts + 1
    assert now.bytes >= before.bytes + div(info.context_bytes, 2)
  end

  test "a smaller window makes a smaller context" do
    small = Zstd.compress_stream(window_log: 10, chain_log: 10, hash_log: 10, level: 1)
    default = Zstd.compress_stream()
    # zstd allocates its tables and window at the first message.
    assert Zstd.info(default).context_bytes < 10_000
    for stream <- [small, default], do: Zstd.compress(stream, "hello")
    assert Zstd.info(small).context_bytes < div(Zstd.info(default).context_bytes, 4)
  end

  test "large messages (dirty scheduler) round trip" do
    stream = Zstd.compress_stream()
    reader = Zstd.decompress_stream()
    data = :crypto.strong_rand_bytes(1_000_000) |> Base.encode16()
    assert {:ok, ^data} = Zstd.decompress(reader, Zstd.compress(stream, data), 4_000_000)
  end

  test "decompression is bounded" do
    frame = Zstd.compress(Zstd.compress_stream(), String.duplicate("x", 10_000))

    assert {:error, {:zstd_error, "zstd: output larger than the limit"}} =
             Zstd.decompress(Zstd.decompress_stream(), frame, 9_999)
  end

  test "bad arguments raise naming the term" do
    assert_raise ArgumentError, ~r/invalid :level option: "six"/, fn ->
      Zstd.compress_stream(level: "six")
    end

    assert_raise ArgumentError, ~r/a Switchboard.Zstd compress stream/, fn ->
      Zstd.compress(make_ref(), "x")
    end
  end

  test "two processes using one stream at once: one raises, none corrupts" do
    stream = Zstd.compress_stream()
    big = :binary.copy("abcdefgh", 2_000_000)
    parent = self()

    tasks =
      for _ <- 1..4 do
        spawn(fn ->
          result =
            try do
              Zstd.compress(stream, big)
              :ok
            rescue
              e in RuntimeError -> e.message
            end

          send(parent, {:result, result})
        end)
      end

    results = for _ <- tasks, do: assert_receive({:result, r}, 10_000) && r
    assert Enum.all?(results, &(&1 == :ok or &1 =~ "used by two calls at once"))
  end
end
