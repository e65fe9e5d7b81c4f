defmodule Switchboard.Gateway.Codec do
  @moduledoc """
  The behaviour of a gateway encoding (`encoding=json|etf`).

  A dispatch is encoded in two steps so that an event for many sessions is
  encoded once: the guild makes one `fragment/1` of the event's data, and
  each session splices it into its own envelope with `dispatch/3` (which
  adds the session's sequence number).

  Implementations: `Switchboard.Gateway.Codec.Json` and
  `Switchboard.Gateway.Codec.Etf`.
  """

  @typedoc "The data of an event, encoded once, ready to be spliced."
  @type fragment :: term()

  @doc "Encodes a whole payload."
  @callback encode(term()) :: iodata()

  @doc "Encodes the `d` of a dispatch once for every session."
  @callback fragment(term()) :: fragment()

  @doc "A dispatch envelope (`op` 0) around a fragment."
  @callback dispatch(seq :: pos_integer(), type :: String.t(), fragment()) :: iodata()

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
