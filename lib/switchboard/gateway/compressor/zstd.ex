defmodule Switchboard.Gateway.Compressor.Zstd do
  @moduledoc """
  zstd-stream: one `ZSTD_CCtx` per connection (`Switchboard.Zstd`), each
  payload flushed. Discord's parameters by default (level 6, window log 18,
  chain log 16, hash log 16); options as for `Switchboard.Zstd.compress_stream/1`.
  The context lives in native memory outside the VM's allocators.
  """

  @behaviour Switchboard.Gateway.Compressor

  alias Switchboard.Zstd

  @impl true
  def new(opts \\ []), do: Zstd.compress_stream(opts)

  @impl true
  def compress(stream, data), do: Zstd.compress(stream, data)

  @impl true
  def memory(stream), do: {Zstd.info(stream).context_bytes, :native}

  @impl true
  def handover(_stream, _pid), do: :ok

  # The context is freed when the last reference to the stream goes.
  @impl true
  def close(_stream), do: :ok
end
