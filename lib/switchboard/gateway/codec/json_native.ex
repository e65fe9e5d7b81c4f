defmodule Switchboard.Gateway.Codec.Json.Native do
  @moduledoc """
  The gateway's default JSON backend: `Switchboard.Json` (the project's
  native codec, with its pure twin selected the same way as every other
  native module).

  Client payloads are at most 4096 bytes; the decoder is also bounded in
  depth here (64 levels, far more than any gateway command has).
  """

  @behaviour Switchboard.Gateway.Codec.Json.Backend

  @impl true
  def encode(term), do: Switchboard.Json.encode_to_iodata!(term)

  @impl true
  def decode(binary) do
    case Switchboard.Json.decode(binary, max_depth: 64) do
      {:ok, term} -> {:ok, term}
      {:error, reason} -> {:error, reason}
    end
  end
end
