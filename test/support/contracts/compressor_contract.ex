defmodule Switchboard.Test.CompressorContract do
  @moduledoc false
  # One suite for every Switchboard.Gateway.Compressor: `use` it with the
  # implementation, and define `decoder/0` returning an independent decoder
  # for its stream (a fun taking one payload's bytes, returning its text).
  defmacro __using__(opts) do
    quote do
      @compressor unquote(Keyword.fetch!(opts, :compressor))

      test "every payload decodes as soon as it is compressed, history shared" do
        stream = @compressor.new([])
        decode = decoder()

        sizes =
          for n <- 1..30 do
            payload = ~s({"op":0,"s":#{n},"t":"MESSAGE_CREATE","d":{"content":"message #{n}"}})
            bytes = IO.iodata_to_binary(@compressor.compress(stream, payload))
            assert decode.(bytes) == payload
            byte_size(bytes)
          end

        # Later payloads repeat the first almost entirely.
        assert List.last(sizes) < div(hd(sizes), 2)
        @compressor.close(stream)
      end

      test "iodata, empty and large payloads" do
        stream = @compressor.new([])
        decode = decoder()

        assert decode.(IO.iodata_to_binary(@compressor.compress(stream, ["a", ["b" | "c"]]))) ==
                 "abc"

        assert decode.(IO.iodata_to_binary(@compressor.compress(stream, ""))) == ""
        large = :crypto.strong_rand_bytes(300_000) |> Base.encode64()
        assert decode.(IO.iodata_to_binary(@compressor.compress(stream, large))) == large
      end

      test "memory is reported (once the stream has been used)" do
        stream = @compressor.new([])
        _ = @compressor.compress(stream, "hello")
        {bytes, where} = @compressor.memory(stream)
        assert bytes > 100_000
        assert where in [:native, :vm]
      end

      test "a stream handed to another process keeps its history" do
        stream = @compressor.new([])
        decode = decoder()
        assert decode.(IO.iodata_to_binary(@compressor.compress(stream, "first"))) == "first"
        parent = self()

        pid =
          spawn(fn ->
            receive do
              :go ->
                send(
                  parent,
                  {:bytes, IO.iodata_to_binary(@compressor.compress(stream, "second"))}
                )
            end
          end)

        :ok = @compressor.handover(stream, pid)
        send(pid, :go)
        assert_receive {:bytes, bytes}
        assert decode.(bytes) == "second"
      end
    end
  end
end
