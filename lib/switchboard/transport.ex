defmodule Switchboard.Transport do
  @moduledoc """
  Where a `Switchboard.Session` writes its frames: a behaviour.

  A transport's state lives inside its session process: the session calls
  `send_frame/3` for every frame it has encoded and then asks
  `buffered_bytes/1` how much is still waiting to reach the client. When
  that passes the session's `:buffer_limit`, the session disconnects the
  client with `{:slow_consumer, bytes}` (and counts it) rather than let the
  buffer grow.

  The meta (`t:meta/0`) is a map per frame; a transport that does not
  read it implements the optional `c:meta?/1` and gets `nil`.

  `Switchboard.Transport.Sink` is the in-memory transport used by the
  simulator and the tests (it reads the meta only with `:forward`); the
  WebSocket connection implements the same callbacks.
  """

  @typedoc "What the session knows about a frame: its sequence number and kind."
  @type meta :: %{seq: pos_integer(), type: String.t()}

  @typedoc "A transport's own state, kept in the session."
  @type state :: term()

  @doc "Sets up the transport from the session's `:transport` options."
  @callback init(opts :: keyword()) :: {:ok, state()}

  @doc "Writes (or queues) one encoded frame (`meta` is `nil` when `meta?/1` said `false`)."
  @callback send_frame(state(), frame :: iodata(), meta() | nil) :: {:ok, state()}

  @doc """
  Whether `send_frame/3` reads its `meta`: when `false` the session passes
  `nil` instead, and builds no map per frame. Asked once, when the session
  sets the transport up (`init/1`, a resume's new transport). Optional:
  without it the session always passes the meta.
  """
  @callback meta?(state()) :: boolean()

  @doc "Bytes accepted by `send_frame/3` and not yet written to the client."
  @callback buffered_bytes(state()) :: non_neg_integer()

  @doc "Closes the connection; `reason` is why the session ends."
  @callback close(state(), reason :: term()) :: :ok

  @optional_callbacks meta?: 1
end
