defmodule Switchboard.Sim.FloorSession do
  @moduledoc false
  # The simulator's floor receiver (`mix switchboard.sim --receiver floor`):
  # the least a session must do for each frame, in the leanest process
  # that does it, so that the same run (guild, relays, fan-out, driver,
  # window) measures what the VM itself costs for a session's work.
  #
  # Per frame it does what `Switchboard.Session` does on its usual path:
  # checks the guild's stream number (counting what is missing or
  # arrives twice), numbers the frame and splices the number into the
  # prepared frame (`codec.frame/2`), writes it to a
  # `Switchboard.Transport.Sink`, keeps the frame's key (the last 256, in
  # two batches as the session does), and counts it in the simulator's
  # metrics, with the latency of one frame in 4 (`Metrics.sampled?/1`).
  # Its transport's buffer past `:buffer_limit` stops it as a slow
  # consumer (counted with the sessions'). It has no general path: one
  # guild, no resume, no filter (`:select`), no mailbox bound, no runtime
  # metrics, and its state is one flat tuple.

  use GenServer

  alias Switchboard.Session.Metrics
  alias Switchboard.Transport.Sink

  require Metrics

  @replay_limit 256

  def child_spec(opts),
    do: %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}, restart: :temporary}

  def start_link(opts), do: GenServer.start_link(__MODULE__, opts)

  # Under the node's session supervisor, as sessions are.
  def start(opts),
    do: DynamicSupervisor.start_child(Switchboard.Session.Supervisor, {__MODULE__, opts})

  def attach(pid, guild_id, opts), do: GenServer.call(pid, {:attach, guild_id, opts}, :infinity)

  @impl true
  def init(opts) do
    {Sink, sink_opts} = Keyword.get(opts, :transport, {Sink, []})
    {:ok, ts} = Sink.init(sink_opts)
    # Read only when the sink holds bytes (a client that stopped reading).
    Process.put(:buffer_limit, Keyword.get(opts, :buffer_limit, 4 * 1024 * 1024))
    # {metrics, seq, kept, size, ts, guild id, passive, next, lost, duplicated}
    {:ok, {opts[:metrics], 0, [], 0, ts, nil, false, 1, 0, 0}}
  end

  @impl true
  def handle_call({:attach, guild_id, opts}, _from, state) do
    passive = Keyword.get(opts, :passive, false)
    pid = if is_pid(guild_id), do: guild_id, else: Switchboard.Cluster.lookup_guild(guild_id)
    connect = [passive: passive, ranges: Keyword.get(opts, :ranges, [])]
    {:ok, id, all_seq, essential_seq, _} = Switchboard.Guild.connect(pid, self(), connect)
    next = if(passive, do: essential_seq, else: all_seq) + 1
    {metrics, seq, kept, size, ts, _, _, _, lost, duplicated} = state
    {:reply, :ok, {metrics, seq, kept, size, ts, id, passive, next, lost, duplicated}}
  end

  def handle_call(:stats, _from, state) do
    {_, seq, _, _, _, id, passive, next, lost, duplicated} = state

    stats = %{
      seq: seq,
      frames: seq,
      lost: lost,
      duplicated: duplicated,
      out_of_order: 0,
      guilds: [id],
      streams: %{id => {passive, next - 1}}
    }

    {:reply, stats, state}
  end

  # Frames of its guild; anything else is let go.
  @impl true
  def handle_info(
        {:"$sb_event", id, all_seq, essential_seq, _, codec, prepared, key, at},
        {_, _, _, _, _, id, passive, next, lost, duplicated} = state
      ) do
    stream_seq = if passive, do: essential_seq, else: all_seq

    cond do
      stream_seq == next ->
        write(state, next + 1, lost, codec, prepared, key, at, 1)

      stream_seq > next ->
        write(state, stream_seq + 1, lost + stream_seq - next, codec, prepared, key, at, 1)

      true ->
        {:noreply, put_elem(state, 9, duplicated + 1)}
    end
  end

  def handle_info(
        {:"$sb_list", id, codec, prepared, key, at},
        {_, _, _, _, _, id, _, next, lost, _} = state
      ),
      do: write(state, next, lost, codec, prepared, key, at, 0)

  def handle_info(_other, state), do: {:noreply, state}

  defp write(state, next, lost, codec, prepared, key, at, ev) do
    {metrics, seq, kept, size, ts, id, passive, _, _, dup} = state
    seq = seq + 1
    {:ok, ts} = Sink.send_frame(ts, codec.frame(prepared, seq), nil)
    # The session's two batches: a full one is dropped for a new one.
    {kept, size} = if size < @replay_limit, do: {[key | kept], size + 1}, else: {[key], 1}

    if at != nil and Metrics.sampled?(seq),
      do: Metrics.observe(metrics, :erlang.system_time(:microsecond) - at)

    Metrics.count(metrics, ev, 1 - ev)
    state = {metrics, seq, kept, size, ts, id, passive, next, lost, dup}

    case Sink.buffered_bytes(ts) do
      0 ->
        {:noreply, state}

      buffered ->
        if buffered > Process.get(:buffer_limit) do
          Switchboard.Session.slow_disconnected()
          {:stop, {:shutdown, {:slow_consumer, buffered}}, state}
        else
          {:noreply, state}
        end
    end
  end
end
