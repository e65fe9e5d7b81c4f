defmodule Switchboard.Codec do
  @moduledoc """
  How an event becomes frames: encoded once per event, finished once per session.

  A guild calls `c:prepare/2` once per event: the payload is encoded there
  (as a `Switchboard.Erlpack` fragment for ETF sessions) together with every
  byte of the envelope that is the same for all sessions. Each session then
  calls `c:frame/2` with its own sequence number, which only splices that
  number in: `[prefix, seq, suffix]`, iodata that shares the prepared
  binaries. So an event for N sessions costs one encode and N tiny splices.

  `Switchboard.Codec.ETF` (native Erlpack) and `Switchboard.Codec.ETF.Pure`
  (the pure twin) are the implementations; a JSON codec adds its own.
  """

  @typedoc "What `c:prepare/2` returns: everything but the session's sequence number."
  @type prepared :: term()

  @doc "Encodes `data` and the envelope of an event of `type` (op 0, dispatch)."
  @callback prepare(type :: String.t(), data :: term()) :: prepared()

  @doc "The frame of a prepared event for the session's sequence number `seq`."
  @callback frame(prepared(), seq :: pos_integer()) :: iodata()
end
