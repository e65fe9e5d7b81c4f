defmodule Switchboard.Gateway.Codec do
  @moduledoc """
  The behaviour of a gateway encoding (`encoding=json|etf`).

  This is what the connection itself encodes and decodes (HELLO, ACKs,
  clients' commands); dispatches are prepared once per event by the
  guild's `Switchboard.Codec` (`Switchboard.Gateway.Frames`) and numbered
  by each session.

  Implementations: `Switchboard.Gateway.Codec.Json` and
  `Switchboard.Gateway.Codec.Etf`.
  """

  @doc "Encodes a whole payload."
  @callback encode(term()) :: iodata()

  @doc """
  Decodes a client payload as plain data: maps with string keys, lists,
  strings, numbers, booleans and nil. Anything else is an error.
  """
  @callback decode(binary()) :: {:ok, term()} | {:error, term()}

  @doc "The WebSocket frame type for uncompressed payloads."
  @callback frame_type() :: :text | :binary

  @doc "The codec for an encoding."
  @spec for_encoding(:json | :etf) :: module()
  def for_encoding(:json), do: Switchboard.Gateway.Codec.Json
  def for_encoding(:etf), do: Switchboard.Gateway.Codec.Etf
end
