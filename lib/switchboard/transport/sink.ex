defmodule Switchboard.Transport.Sink do
  @moduledoc """
  An in-memory `Switchboard.Transport`: frames go nowhere, or to a test process.

  ## Options

    * `:forward` - a pid that receives `{:frame, session_pid, frame, meta}`
      for every frame (tests decode and check them). Defaults to `nil`.
    * `:hold` - when `true`, the sink never drains: every frame's bytes stay
      buffered, as behind a client that stopped reading. Defaults to `false`
      (every frame is written at once).
  """

  @behaviour Switchboard.Transport

  defstruct forward: nil, hold: false, buffered: 0

  @impl true
  def init(opts) do
    opts = Keyword.validate!(opts, forward: nil, hold: false)
    {:ok, %__MODULE__{forward: opts[:forward], hold: opts[:hold]}}
  end

  @impl true
  def send_frame(%__MODULE__{forward: nil, hold: false} = sink, _frame, _meta), do: {:ok, sink}

  def send_frame(
        %__MODULE__{forward: forward, hold: hold, buffered: buffered} = sink,
        frame,
        meta
      ) do
    if forward, do: send(forward, {:frame, self(), frame, meta})
    buffered = if hold, do: buffered + IO.iodata_length(frame), else: buffered
    {:ok, %{sink | buffered: buffered}}
  end

  # Only a forwarding sink sends the meta on.
  @impl true
  def meta?(%__MODULE__{forward: forward}), do: forward != nil

  @impl true
  def buffered_bytes(%__MODULE__{buffered: buffered}), do: buffered

  @impl true
  def close(%__MODULE__{forward: nil}, _reason), do: :ok

  def close(%__MODULE__{forward: forward}, reason) do
    send(forward, {:closed, self(), reason})
    :ok
  end
end
