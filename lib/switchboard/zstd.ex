defmodule Switchboard.Zstd do
  @moduledoc """
  zstd streams for WebSocket compression: one context per connection, every
  message flushed so the receiver can decode it on arrival.

  This is the compressor behind the gateway's `zstd-stream` transport
  (`Switchboard.Gateway.Compressor.Zstd`). Contexts live in native memory
  allocated by the core (mimalloc), outside the VM's allocators; their size
  is reported by `info/1` and, for all of them, `native_memory/0`.

  Work is measured in bytes: a message of more than 32 KiB is compressed on
  a dirty CPU scheduler, a smaller one inline (well under a millisecond).

  A stream belongs to one process at a time; using one stream from two
  processes at once raises.

  ## Examples

      iex> stream = Switchboard.Zstd.compress_stream()
      iex> frame = Switchboard.Zstd.compress(stream, ~s({"op":11}))
      iex> reader = Switchboard.Zstd.decompress_stream()
      iex> Switchboard.Zstd.decompress(reader, frame)
      {:ok, ~s({"op":11})}
  """

  alias Switchboard.NIF

  @opaque compress_stream :: reference()
  @opaque decompress_stream :: reference()

  @type parameter ::
          {:level, integer()}
          | {:window_log, pos_integer()}
          | {:chain_log, pos_integer()}
          | {:hash_log, pos_integer()}

  @doc """
  A new compression stream.

  ## Options

  Discord's zstd-stream parameters are the defaults:

    * `:level` - compression level. Defaults to `6`.
    * `:window_log` - log2 of the window. Defaults to `18` (256 KiB).
    * `:chain_log` - defaults to `16`.
    * `:hash_log` - defaults to `16`.

  ## Examples

      iex> Switchboard.Zstd.compress_stream(level: 3) |> is_reference()
      true

      iex> Switchboard.Zstd.compress_stream(window_log: 99)
      ** (ArgumentError) zstd window_log out of range: 99
  """
  @spec compress_stream([parameter()]) :: compress_stream()
  def compress_stream(opts \\ []) do
    opts = Keyword.validate!(opts, level: 6, window_log: 18, chain_log: 16, hash_log: 16)

    for {name, value} <- opts, not is_integer(value) do
      raise ArgumentError, "invalid #{inspect(name)} option: #{inspect(value)}"
    end

    NIF.zstd_compress_new(opts[:level], opts[:window_log], opts[:chain_log], opts[:hash_log])
  end

  @doc """
  Compresses `data` (iodata) as the next message of `stream`, flushed.
  """
  @spec compress(compress_stream(), iodata()) :: binary()
  def compress(stream, data) when is_binary(data), do: NIF.zstd_compress(stream, data)
  def compress(stream, data), do: NIF.zstd_compress(stream, IO.iodata_to_binary(data))

  @doc """
  What a compression stream holds: `:context_bytes` (native memory of the
  context, window and tables included), `:bytes_in` and `:bytes_out`.
  """
  @spec info(compress_stream()) :: %{
          context_bytes: non_neg_integer(),
          bytes_in: non_neg_integer(),
          bytes_out: non_neg_integer()
        }
  def info(stream) do
    {context, bytes_in, bytes_out} = NIF.zstd_compress_info(stream)
    %{context_bytes: context, bytes_in: bytes_in, bytes_out: bytes_out}
  end

  @doc "Native bytes held by every live zstd context, and how many there are."
  @spec native_memory() :: %{bytes: non_neg_integer(), contexts: non_neg_integer()}
  def native_memory do
    {bytes, contexts} = NIF.zstd_native_memory()
    %{bytes: bytes, contexts: contexts}
  end

  @doc """
  A decompression stream accepting windows up to `2^window_log_max` bytes
  (default 23, 8 MiB).
  """
  @spec decompress_stream(10..31) :: decompress_stream()
  def decompress_stream(window_log_max \\ 23), do: NIF.zstd_decompress_new(window_log_max)

  @doc """
  Decodes the next piece of a stream. Returns `{:ok, bytes}` (possibly empty
  when the piece ends mid-block), or `{:error, {:zstd_error, message}}` for a
  corrupt stream or one that would inflate past `max_output` bytes (default
  16 MiB).

  ## Examples

      iex> Switchboard.Zstd.decompress(Switchboard.Zstd.decompress_stream(), "nope")
      {:error, {:zstd_error, "zstd: Unknown frame descriptor"}}
  """
  @spec decompress(decompress_stream(), binary(), non_neg_integer()) ::
          {:ok, binary()} | {:error, {:zstd_error, String.t()}}
  def decompress(stream, data, max_output \\ 16 * 1024 * 1024)
      when is_binary(data) and is_integer(max_output) and max_output >= 0,
      do: NIF.zstd_decompress(stream, data, max_output)
end
