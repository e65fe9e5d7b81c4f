defmodule Switchboard.Gateway.Transport do
  @moduledoc """
  The `Switchboard.Transport` of a gateway session: frames go to the
  connection process that owns the client's socket
  (`Switchboard.Gateway.Connection`), which compresses, frames and writes
  them.

  The bytes handed over and not yet written are counted in an `:atomics`
  shared with the connection (it subtracts what it wrote), which is what
  the session's back-pressure reads. Once the connection is gone nothing
  is waiting (the session is lingering for a RESUME).

  ## Options

    * `:conn` - the connection's pid (required).
    * `:counter` - an `:atomics` of one signed integer (required).
    * `:needs` - `{guild_needs, kind}`: counted out of its guilds'
      `Switchboard.Gateway.Frames.needs/0` when the session ends (closed
      for any reason but `:resumed`). Defaults to `nil`.
  """

  @behaviour Switchboard.Transport

  defstruct [:conn, :counter, :needs]

  @impl true
  def init(opts),
    do: {:ok, %__MODULE__{conn: opts[:conn], counter: opts[:counter], needs: opts[:needs]}}

  @impl true
  def send_frame(%__MODULE__{conn: conn, counter: counter} = transport, frame, meta) do
    size = IO.iodata_length(frame)
    :atomics.add(counter, 1, size)
    send(conn, {:"$gw_frame", frame, size, meta.seq})
    {:ok, transport}
  end

  @impl true
  def buffered_bytes(%__MODULE__{conn: conn, counter: counter}) do
    if Process.alive?(conn), do: :atomics.get(counter, 1), else: 0
  end

  @impl true
  def close(%__MODULE__{conn: conn, needs: needs}, reason) do
    with {guild_needs, kind} when reason != :resumed <- needs,
         do: Switchboard.Gateway.Frames.need(guild_needs, kind, -1)

    send(conn, {:"$gw_close", reason})
    :ok
  end
end
