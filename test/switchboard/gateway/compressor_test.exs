defmodule Switchboard.Gateway.Compressor.ZlibTest do
  use ExUnit.Case, async: true

  use Switchboard.Test.CompressorContract, compressor: Switchboard.Gateway.Compressor.Zlib

  def decoder do
    z = :zlib.open()
    :ok = :zlib.inflateInit(z)

    fn bytes ->
      # Every zlib-stream payload ends with a sync flush.
      assert binary_part(bytes, byte_size(bytes) - 4, 4) == <<0, 0, 255, 255>>
      IO.iodata_to_binary(:zlib.inflate(z, bytes))
    end
  end
end

defmodule Switchboard.Gateway.Compressor.ZstdTest do
  use ExUnit.Case, async: true

  use Switchboard.Test.CompressorContract, compressor: Switchboard.Gateway.Compressor.Zstd

  def decoder do
    reader = Switchboard.Zstd.decompress_stream()

    fn bytes ->
      {:ok, text} = Switchboard.Zstd.decompress(reader, bytes)
      text
    end
  end
end
