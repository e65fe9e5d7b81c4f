defmodule Switchboard.Gateway.Compressor do
  @moduledoc """
  The behaviour of a transport compression (`compress=zlib-stream|zstd-stream`):
  one stream per connection, each payload compressed and flushed so the
  client can decode it as soon as its frame arrives, the history shared by
  every payload of the connection.

  Implementations: `Switchboard.Gateway.Compressor.Zlib` (OTP's `:zlib`,
  every payload ending with the `00 00 ff ff` of a sync flush) and
  `Switchboard.Gateway.Compressor.Zstd` (`Switchboard.Zstd`, native).
  """

  @type t :: term()

  @doc "A new stream, owned by the calling process."
  @callback new(keyword()) :: t()

  @doc "Compresses one payload and flushes."
  @callback compress(t(), iodata()) :: iodata()

  @doc "Memory held by the stream, in bytes, and where (`:native` or `:vm`)."
  @callback memory(t()) :: {non_neg_integer(), :native | :vm}

  @doc """
  Gives the stream to another process (a connection handed over to the
  session it resumes keeps its stream: the client's decoder is mid-stream).
  """
  @callback handover(t(), pid()) :: :ok

  @doc "Releases the stream."
  @callback close(t()) :: :ok

  @doc "The compressor for a `compress` query value (`nil`: none)."
  @spec for_compression(nil | :zlib_stream | :zstd_stream) :: module() | nil
  def for_compression(nil), do: nil
  def for_compression(:zlib_stream), do: Switchboard.Gateway.Compressor.Zlib
  def for_compression(:zstd_stream), do: Switchboard.Gateway.Compressor.Zstd
end
