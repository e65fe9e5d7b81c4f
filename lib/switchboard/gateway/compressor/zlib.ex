defmodule Switchboard.Gateway.Compressor.Zlib do
  @moduledoc """
  zlib-stream: one deflate context per connection (OTP's `:zlib`), each
  payload ended by a sync flush (`00 00 ff ff`).

  Options: `:level` (default `:default`, zlib's 6), `:window_bits` (default
  15), `:mem_level` (default 8). The context lives in memory the VM
  allocates for the zlib NIF: about `2^(window_bits + 2) + 2^(mem_level + 9)`
  bytes (256 KiB at the defaults), plus zlib's fixed state.
  """

  @behaviour Switchboard.Gateway.Compressor

  @impl true
  def new(opts \\ []) do
    level = Keyword.get(opts, :level, :default)
    window_bits = Keyword.get(opts, :window_bits, 15)
    mem_level = Keyword.get(opts, :mem_level, 8)
    z = :zlib.open()
    :ok = :zlib.deflateInit(z, level, :deflated, window_bits, mem_level, :default)
    {z, window_bits, mem_level}
  end

  # An empty payload flushes nothing in zlib; its frame is then written as
  # the empty stored block a sync flush ends with (the stream is byte-aligned
  # after every flush), so every payload still ends with 00 00 ff ff.
  @empty_block <<0, 0, 0, 255, 255>>

  @impl true
  def compress({z, _, _}, data) do
    case :zlib.deflate(z, data, :sync) do
      [] -> @empty_block
      compressed -> if IO.iodata_length(compressed) == 0, do: @empty_block, else: compressed
    end
  end

  @impl true
  def memory({_z, window_bits, mem_level}),
    do: {Bitwise.bsl(1, window_bits + 2) + Bitwise.bsl(1, mem_level + 9) + 5_816, :vm}

  @impl true
  def handover({z, _, _}, pid), do: :zlib.set_controlling_process(z, pid)

  @impl true
  def close({z, _, _}) do
    :zlib.close(z)
    :ok
  end
end
