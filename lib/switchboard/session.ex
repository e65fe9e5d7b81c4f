defmodule Switchboard.Session do
  @moduledoc """
  One connected client: a process that turns guild events into numbered frames.

  A guild sends each event to its sessions once, encoded once (see
  `Switchboard.Codec`); the session gives it the next number of its own
  sequence, splices that number into the prepared frame
  (`%{"op" => 0, "t" => type, "s" => seq, "d" => payload}` for ETF), and
  writes the frame to its `Switchboard.Transport`.

  ## Resuming

  The last `:replay_limit` frames can be replayed: the session keeps only
  their numbers and their keys in the guild's table of its latest frames
  (see `Switchboard.Guild`'s `:replay_events`), so a kept frame costs the
  session a few words and no payload. A client that
  reconnects with the last sequence number it saw gets the frames it missed,
  in order, from `resume/2`, or `{:error, :gone}` when some of them have
  already left the session's buffer or the guild's table, or the guild is
  gone (the client must then start over).

  ## Back-pressure

  After every frame the session asks its transport how many bytes are still
  waiting for the client. Past `:buffer_limit` the session closes the
  transport and stops with `{:shutdown, {:slow_consumer, bytes}}`, at that
  frame, even in the middle of a wake-up's batch (so the buffer passes the
  limit by one frame at most); every such disconnect is counted
  (`slow_disconnects/0`). Other sessions are not
  affected: the guild only ever sends to a session, never waits for one.

  The session's own mailbox is bounded the same way: a guild and its
  relays run ahead of their sessions (high priority, see
  `Switchboard.Guild`), so a session that cannot keep up with what it is
  sent (a node short of CPU) would see its mailbox grow. When a wake-up
  ends with frames still waiting (a full batch), the session counts
  them, and past `:queue_limit` it stops with `{:shutdown, {:slow_consumer,
  {:queued, frames}}}`, counted as above.

  ## Cost per frame

  A session wakes up for every event and member-list update waiting in
  its mailbox (up to 64 at a time) and keeps what changes with each frame
  (its number, the kept frames, the transport's state, the guild's
  stream number) in the loop's arguments, writing its state once per
  wake-up: a frame allocates its iodata, its kept key and what its
  transport returns. A transport that does not read the per-frame meta
  says so (`c:Switchboard.Transport.meta?/1`) and gets `nil` instead of a
  map per frame.

  ## Metrics and guards

  Each session counts itself in `switchboard.sessions.connected` and each
  frame it writes in `switchboard.frames.delivered` (one frame in 8 also
  in `switchboard.publish_to_frame_us`), see `Switchboard.RuntimeMetrics`.
  Its calls to a guild (attach, re-attach, subscribe) go through
  `Switchboard.Guard`, so thousands of sessions attaching at once back off
  instead of flooding the guild.

  ## Checks

  Every event carries the guild's own sequence of the stream the session
  is on (all events for an active session, essential events for a passive
  one), so the session counts what went missing, arrived twice or arrived
  late (`stats/1`). The simulator adds these up over every session.
  """

  use GenServer

  alias Switchboard.{Guard, RuntimeMetrics}
  alias Switchboard.Session.Metrics

  require Metrics
  require RuntimeMetrics

  @counters_key {__MODULE__, :counters}
  @default_replay_limit 256
  @default_buffer_limit 4 * 1024 * 1024
  @default_queue_limit 10_000
  # Frames written in one wake-up at most (see wake/2).
  @batch 64
  @no_tally {0, 0, 0, nil}

  @type stats :: %{
          seq: non_neg_integer(),
          frames: non_neg_integer(),
          lost: non_neg_integer(),
          duplicated: non_neg_integer(),
          out_of_order: non_neg_integer(),
          guilds: [term()],
          streams: %{term() => {passive :: boolean(), last_seq :: non_neg_integer()}}
        }

  # What changes with every frame, in a small struct (it is copied once
  # per wake-up), and the rest in `conf`, shared by the copies. `hot` is
  # what a wake-up reads of `conf`, in a tuple (see heat/1): a wake-up
  # touches no `conf`, which at the simulator's scale is a cache miss or
  # more.
  defmodule State do
    @moduledoc false
    defstruct [
      :transport_state,
      :conf,
      :hot,
      seq: 0,
      replay: [],
      replay_size: 0,
      replay_older: [],
      guilds: %{}
    ]
  end

  defmodule Conf do
    @moduledoc false
    defstruct [
      :id,
      :transport,
      :metrics,
      :replay_limit,
      :buffer_limit,
      :queue_limit,
      :select,
      :owner,
      :linger,
      :linger_timer,
      lost: 0,
      duplicated: 0,
      out_of_order: 0,
      backlog: false,
      store: nil,
      meta: true
    ]
  end

  # ---------------------------------------------------------------------------
  # API

  @doc """
  Starts a session.

  ## Options

    * `:id` - the session's id (any term). Defaults to a unique integer.
    * `:transport` - `{module, opts}` of a `Switchboard.Transport`.
      Defaults to `{Switchboard.Transport.Sink, []}`.
    * `:replay_limit` - frames kept for `resume/2`. Defaults to #{@default_replay_limit}.
    * `:buffer_limit` - transport bytes waiting for the client past which the
      session disconnects. Defaults to #{@default_buffer_limit}.
    * `:queue_limit` - frames waiting in the session's own mailbox past
      which it disconnects (see Back-pressure). Defaults to #{@default_queue_limit}.
    * `:metrics` - a `Switchboard.Session.Metrics` to count frames and
      latencies in. Defaults to `nil`.
    * `:name` - a name to register the process under (`GenServer` names).
      Defaults to none.
    * `:select` - a function `(type, codec, prepared) -> {codec, prepared} | :skip`
      called for every frame before it is numbered: `:skip` leaves it out
      (the session's filter, e.g. the gateway's intents), else the frame is
      made from what it returns (a per-session variant of the payload).
      Defaults to `nil` (every frame as prepared).
    * `:owner` - a pid the session watches (the process serving its
      client); when it goes down the session waits `:linger` ms for a
      `resume/3` that gives it a new one, then stops. Defaults to `nil`.
    * `:linger` - see `:owner`. Defaults to `0`.
    * `:spawn_opt` - `Process.spawn/4` options for the session's process
      (e.g. `min_heap_size`). Defaults to `[]`: at the simulator's scale
      neither a larger minimum heap nor earlier full sweeps cut the
      session's garbage collection time (see bench/RESULTS.md, issue 12).
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []) do
    {name, opts} = Keyword.pop(opts, :name)
    {spawn_opt, opts} = Keyword.pop(opts, :spawn_opt, [])
    start_opts = [spawn_opt: spawn_opt] ++ if(name, do: [name: name], else: [])
    GenServer.start_link(__MODULE__, opts, start_opts)
  end

  @doc "A child spec under `Switchboard.Session.Supervisor` (temporary: a session that ends stays ended)."
  def child_spec(opts),
    do: %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}, restart: :temporary}

  @doc """
  Starts a session under this node's `Switchboard.Session.Supervisor`.
  """
  @spec start(keyword()) :: DynamicSupervisor.on_start_child()
  def start(opts \\ []),
    do: DynamicSupervisor.start_child(Switchboard.Session.Supervisor, {__MODULE__, opts})

  @doc """
  Attaches the session to a guild (its pid, or its id when `Switchboard.Cluster` finds it).

  When the guild goes down, a session attached by id looks it up again
  (its owner may have moved) and re-attaches, with its subscriptions.

  ## Options

    * `:passive` - receive only essential events and no member-list
      updates until `subscribe/3`. Defaults to `false`.
    * `:ranges` - member-list ranges to subscribe to at once. Defaults to `[]`.
    * `:greeting` - `{type, codec, prepared}`: a frame written (numbered as
      any other) as soon as the guild has the session, before any event
      of the guild (the gateway's GUILD_CREATE). Defaults to `nil`.
  """
  @spec attach(GenServer.server(), pid() | term(), keyword()) :: :ok | {:error, term()}
  # No call timeout: the session's own calls are bounded (the guild call's
  # 5 s, Switchboard.Guard's retries).
  def attach(session, guild, opts \\ []),
    do: GenServer.call(session, {:attach, guild, opts}, :infinity)

  @doc "Subscribes the session to member-list `ranges` of an attached guild (by guild id)."
  @spec subscribe(GenServer.server(), term(), [[non_neg_integer()]]) :: :ok | {:error, term()}
  def subscribe(session, guild_id, ranges),
    do: GenServer.call(session, {:subscribe, guild_id, ranges}, :infinity)

  @doc """
  The frames after `last_seq`, in order, for a client that reconnects.

  `{:error, :gone}` when some of them are no longer kept,
  `{:error, :invalid_seq}` when `last_seq` is ahead of the session.
  """
  @spec resume(GenServer.server(), non_neg_integer()) ::
          {:ok, [iodata()]} | {:error, :gone | :invalid_seq}
  def resume(session, last_seq) when is_integer(last_seq) and last_seq >= 0,
    do: GenServer.call(session, {:resume, last_seq})

  @doc """
  Resumes the session on a new connection: the frames after `last_seq`
  are written, in order, to a new transport, which then takes the old
  one's place (closed with reason `:resumed`), all in one step, so every
  later frame follows them. Returns `{:ok, frames_replayed}`, or the
  errors of `resume/2` (the session is left as it was).

  ## Options

    * `:transport` - `{module, opts}`, the new transport (required).
    * `:owner` - the new owner (see `start_link/1`). Defaults to `nil`.
    * `:greeting` - `{type, codec, prepared}`, a frame written after the
      replayed ones (the gateway's RESUMED). Defaults to `nil`.
  """
  @spec resume(GenServer.server(), non_neg_integer(), keyword()) ::
          {:ok, non_neg_integer()} | {:error, :gone | :invalid_seq}
  def resume(session, last_seq, opts) when is_integer(last_seq) and last_seq >= 0 do
    opts = Keyword.validate!(opts, [:transport, owner: nil, greeting: nil])
    Keyword.fetch!(opts, :transport)
    GenServer.call(session, {:resume, last_seq, opts})
  end

  @doc """
  Writes one frame that comes from no guild (the gateway's READY, a
  member chunk...), numbered and kept for resuming like any other.
  """
  @spec dispatch(GenServer.server(), String.t(), module(), term()) :: :ok
  def dispatch(session, type, codec, prepared) when is_binary(type),
    do: GenServer.call(session, {:dispatch, type, codec, prepared})

  @doc """
  The session's counters (see the moduledoc's Checks): its `seq`, `frames`
  written, `lost`/`duplicated`/`out_of_order` stream numbers, and for each
  attached guild whether it is passive and the last stream number seen.
  """
  @spec stats(GenServer.server()) :: stats()
  def stats(session), do: GenServer.call(session, :stats)

  @doc "Sessions this node disconnected because their client fell behind."
  @spec slow_disconnects() :: non_neg_integer()
  def slow_disconnects, do: :counters.get(counters(), 1)

  @doc false
  # One more slow disconnect (the simulator's floor receiver counts its own here).
  def slow_disconnected, do: :counters.add(counters(), 1, 1)

  @doc false
  # Created once, by the application.
  def init_counters do
    :persistent_term.put(@counters_key, :counters.new(1, [:write_concurrency]))
  end

  defp counters, do: :persistent_term.get(@counters_key)

  # ---------------------------------------------------------------------------
  # Server

  @impl true
  def init(opts) do
    # Messages are received on the heap (cheapest per message) until a
    # backlog builds up (see wake/2).
    Process.flag(:message_queue_data, :on_heap)

    opts =
      Keyword.validate!(opts,
        id: nil,
        transport: {Switchboard.Transport.Sink, []},
        replay_limit: @default_replay_limit,
        buffer_limit: @default_buffer_limit,
        queue_limit: @default_queue_limit,
        metrics: nil,
        select: nil,
        owner: nil,
        linger: 0
      )

    {transport, transport_opts} = opts[:transport]
    {:ok, transport_state} = transport.init(transport_opts)
    RuntimeMetrics.session_started()

    {:ok,
     %State{
       transport_state: transport_state,
       conf: %Conf{
         id: opts[:id] || System.unique_integer([:positive]),
         transport: transport,
         metrics: opts[:metrics],
         replay_limit: opts[:replay_limit],
         buffer_limit: opts[:buffer_limit],
         queue_limit: opts[:queue_limit],
         select: opts[:select],
         linger: opts[:linger],
         meta: meta?(transport, transport_state)
       }
     }
     |> heat()
     |> watch(opts[:owner])}
  end

  @impl true
  def handle_call({:attach, guild, opts}, _from, state) do
    passive = Keyword.get(opts, :passive, false)
    ranges = Keyword.get(opts, :ranges, [])

    case connect(guild, passive, ranges) do
      {:ok, entry} -> state |> put_guild(entry) |> greet(opts[:greeting]) |> reply(:ok)
      {:error, _} = error -> {:reply, error, state}
    end
  end

  def handle_call({:dispatch, type, codec, prepared}, _from, state),
    do: state |> greet({type, codec, prepared}) |> reply(:ok)

  def handle_call({:resume, last_seq, opts}, _from, state) do
    case replay_entries(state, last_seq) do
      {:ok, entries} ->
        state.conf.transport.close(state.transport_state, :resumed)
        {transport, transport_opts} = opts[:transport]
        {:ok, transport_state} = transport.init(transport_opts)
        meta = meta?(transport, transport_state)
        conf = %{state.conf | transport: transport, meta: meta}
        state = heat(%{state | conf: conf, transport_state: transport_state})

        state =
          Enum.reduce(entries, watch(state, opts[:owner]), fn {seq, type, frame}, state ->
            meta = if meta, do: %{seq: seq, type: type}
            {:ok, transport_state} = transport.send_frame(state.transport_state, frame, meta)

            %{state | transport_state: transport_state}
          end)

        state |> greet(opts[:greeting]) |> reply({:ok, length(entries)})

      {:error, _} = error ->
        {:reply, error, state}
    end
  end

  def handle_call({:subscribe, guild_id, ranges}, _from, state) do
    case state.guilds do
      %{^guild_id => entry} ->
        case Guard.call(:guild, entry.pid, fn ->
               Switchboard.Guild.subscribe_member_list(entry.pid, self(), ranges)
             end) do
          :ok -> {:reply, :ok, put_guild(state, %{entry | ranges: ranges})}
          {:error, _} = error -> {:reply, error, state}
        end

      _ ->
        {:reply, {:error, :not_attached}, state}
    end
  end

  def handle_call({:resume, last_seq}, _from, state) do
    case replay_entries(state, last_seq) do
      {:ok, entries} -> {:reply, {:ok, for({_, _, frame} <- entries, do: frame)}, state}
      error -> {:reply, error, state}
    end
  end

  def handle_call(:stats, _from, state) do
    stats = %{
      seq: state.seq,
      # Every frame written takes the next number.
      frames: state.seq,
      lost: state.conf.lost + pending_losses(state),
      duplicated: state.conf.duplicated,
      out_of_order: state.conf.out_of_order,
      guilds: Map.keys(state.guilds),
      streams: Map.new(state.guilds, fn {id, entry} -> {id, {entry.passive, entry.next - 1}} end)
    }

    {:reply, stats, state}
  end

  @impl true
  def handle_info({:"$sb_event", _, _, _, _, _, _, _, _} = message, state),
    do: wake(message, state)

  def handle_info({:"$sb_list", _, _, _, _, _} = message, state),
    do: wake(message, state)

  def handle_info(
        {:DOWN, ref, :process, _pid, _reason},
        %State{conf: %Conf{owner: {_, ref}} = conf} = state
      ) do
    conf = %{conf | owner: nil}
    state = %{state | conf: conf}

    if conf.linger > 0 do
      timer = make_ref()
      Process.send_after(self(), {:"$sb_linger", timer}, conf.linger)
      {:noreply, %{state | conf: %{conf | linger_timer: timer}}}
    else
      {:stop, :normal, state}
    end
  end

  def handle_info({:"$sb_linger", timer}, %State{conf: %Conf{linger_timer: timer}} = state),
    do: {:stop, :normal, state}

  def handle_info({:"$sb_linger", _stale}, state), do: {:noreply, state}

  def handle_info({:DOWN, _ref, :process, pid, _reason}, state) do
    case Enum.find(state.guilds, fn {_id, entry} -> entry.pid == pid end) do
      {guild_id, %{lookup: true} = entry} ->
        send(self(), {:"$sb_reattach", guild_id, entry, 50})
        {:noreply, %{state | guilds: Map.delete(state.guilds, guild_id)}}

      {guild_id, _entry} ->
        {:noreply, %{state | guilds: Map.delete(state.guilds, guild_id)}}

      nil ->
        {:noreply, state}
    end
  end

  # The guild is moving to another node: try again until its new owner has it.
  def handle_info({:"$sb_reattach", guild_id, entry, tries}, state) do
    case connect(guild_id, entry.passive, entry.ranges) do
      {:ok, entry} ->
        {:noreply, put_guild(state, entry)}

      {:error, _} when tries > 0 ->
        Process.send_after(self(), {:"$sb_reattach", guild_id, entry, tries - 1}, 100)
        {:noreply, state}

      {:error, _} ->
        {:noreply, state}
    end
  end

  @impl true
  def terminate(reason, state) do
    state.conf.transport.close(state.transport_state, reason)
  end

  # ---------------------------------------------------------------------------

  defp connect(guild, passive, ranges) do
    {pid, lookup} =
      if is_pid(guild), do: {guild, false}, else: {Switchboard.Cluster.lookup_guild(guild), true}

    connect = fn -> Switchboard.Guild.connect(pid, self(), passive: passive, ranges: ranges) end

    with true <- is_pid(pid) || {:error, :no_guild},
         {:ok, guild_id, all_seq, essential_seq, replay} <- Guard.call(:guild, pid, connect) do
      Process.monitor(pid)

      {:ok,
       %{
         id: guild_id,
         pid: pid,
         lookup: lookup,
         replay: replay,
         passive: passive,
         ranges: ranges,
         next: if(passive, do: essential_seq, else: all_seq) + 1,
         gaps: %{}
       }}
    end
  catch
    :exit, reason -> {:error, {:guild_down, reason}}
  end

  # The state's `hot`: set again whenever one of its fields changes in
  # `conf` (init, resume, the first guild's table, a backlog).
  defp heat(%State{conf: conf} = state) do
    hot =
      {conf.transport, conf.buffer_limit, conf.replay_limit, conf.select, conf.metrics, conf.meta,
       conf.store, conf.backlog}

    %{state | hot: hot}
  end

  # Whether the transport reads send_frame/3's meta (see
  # `c:Switchboard.Transport.meta?/1`).
  defp meta?(transport, transport_state),
    do: not function_exported?(transport, :meta?, 1) or transport.meta?(transport_state)

  # The first guild's table of frames is the session's `store` for good
  # (see kept/3).
  defp put_guild(state, entry) do
    state =
      if state.conf.store,
        do: state,
        else: heat(%{state | conf: %{state.conf | store: entry.replay}})

    %{state | guilds: Map.put(state.guilds, entry.id, entry)}
  end

  # A new owner is watched (the old one no longer is) and a lingering
  # session stops waiting.
  defp watch(state, owner) do
    with {_, ref} <- state.conf.owner, do: Process.demonitor(ref, [:flush])
    owner = if is_pid(owner), do: {owner, Process.monitor(owner)}
    %{state | conf: %{state.conf | owner: owner, linger_timer: nil}}
  end

  defp greet(state, nil), do: {:noreply, state}

  defp greet(state, {type, codec, prepared}) do
    key = {type, codec, prepared}

    deliver(state, state.guilds, type, codec, prepared, nil, key, nil, false, @no_tally)
    |> finish()
  end

  defp reply({:noreply, state}, reply), do: {:reply, reply, state}
  defp reply({:stop, reason, state}, reply), do: {:stop, reason, reply, state}

  defp select(%State{conf: %Conf{select: nil}}, _type, codec, prepared), do: {codec, prepared}

  defp select(%State{conf: %Conf{select: select}}, type, codec, prepared),
    do: select.(type, codec, prepared)

  # Every event and member-list update queued for the session is written
  # in one wake-up (at most @batch, then calls and system messages get
  # their turn): one trip through the GenServer loop, and the counters of
  # `Switchboard.RuntimeMetrics` and of the shared metrics (one add each)
  # and the clock (read once, for the frames sampled) per wake-up, not
  # per frame. A frame's latency is taken when its wake-up first needs
  # the clock, at most @batch frames (a few µs) before it is written.
  #
  # What changes with every frame is carried in the loop's arguments and
  # put into the state once per wake-up (pack/8), so a frame allocates
  # its iodata, its kept key and what its transport returns, and no
  # state, guilds or entry map. The arguments, in this order: `m` the
  # message, `n` the frames the batch has left, `seq` the session's
  # number, `kept` and `size` the replay batch, `ts` the transport's
  # state, `next` the cached guild's stream number, `ev` and `li` the
  # event and list frames counted (the frames written are `seq - seq0`),
  # `now` the clock if read, and `w`, what stays the same while one
  # guild's frames follow each other: `{state, seq0, hot, id, entry,
  # passive, keep}` (`state` as the loop took it, `hot` the conf's fields
  # a frame reads, see State, and the guild, cached while its stream has
  # no gaps; `keep` is `:own` when its frames are kept as their key alone,
  # see kept/3, else its table). Anything else (another guild, a number
  # out of turn, a full replay batch) takes the general path, take/3, on
  # the packed state.
  defguardp frame?(m)
            when is_tuple(m) and
                   ((tuple_size(m) == 9 and elem(m, 0) == :"$sb_event") or
                      (tuple_size(m) == 6 and elem(m, 0) == :"$sb_list"))

  defp wake(m, state), do: carry(m, @batch, state, state.seq, 0, 0, nil)

  # Into the loop from a state (at a wake-up and after take/3).
  defp carry(m, n, state, seq0, ev, li, now) do
    %State{seq: seq, replay: kept, replay_size: size, transport_state: ts, hot: hot} = state
    load(m, n, seq, kept, size, ts, ev, li, now, state, seq0, hot)
  end

  # The message's guild cached, or the general path.
  defp load(m, n, seq, kept, size, ts, ev, li, now, state, seq0, hot) do
    id = elem(m, 1)

    case state.guilds do
      %{^id => %{next: next, gaps: gaps, passive: passive, replay: store} = entry}
      when map_size(gaps) == 0 ->
        keep = if store != nil and store == elem(hot, 6), do: :own, else: store
        w = {state, seq0, hot, id, entry, passive, keep}
        loop(m, n, seq, kept, size, ts, next, ev, li, now, w)

      _ ->
        general(m, n, state, seq0, ev, li, now)
    end
  end

  # A frame of the cached guild in turn, else the general path (for a
  # frame of another guild too: the next wake-up, or the next frame after
  # it, caches that guild).
  defp loop(m, n, seq, kept, size, ts, next, ev, li, now, w) do
    {_, _, {_, _, limit, _, _, _, _, _}, id, _, passive, _} = w

    case m do
      {:"$sb_event", ^id, all_seq, essential_seq, type, codec, prepared, _, _}
      when size < limit and
             ((passive and essential_seq == next) or (not passive and all_seq == next)) ->
        put(m, type, codec, prepared, n, seq, kept, size, ts, next + 1, ev, li, now, w)

      {:"$sb_list", ^id, codec, prepared, _, _} when size < limit ->
        type = "GUILD_MEMBER_LIST_UPDATE"
        put(m, type, codec, prepared, n, seq, kept, size, ts, next, ev, li, now, w)

      _ ->
        slow(m, n, seq, kept, size, ts, next, ev, li, now, w)
    end
  end

  defp slow(m, n, seq, kept, size, ts, next, ev, li, now, {state, seq0, _, id, entry, _, _}) do
    state = pack(seq, kept, size, ts, id, entry, next, state)
    general(m, n, state, seq0, ev, li, now)
  end

  defp general(m, n, state, seq0, ev, li, now) do
    case take(m, state, {state.seq - seq0, ev, li, now}) do
      {:ok, state, {_, ev, li, now}} -> carry_more(n, state, seq0, ev, li, now)
      result -> finish(result)
    end
  end

  # One frame (what deliver/10 and write/9 do, on the loop's arguments):
  # both messages end with the frame's key and publish time.
  defp put(m, type, codec, prepared, n, seq, kept, size, ts, next, ev, li, now, w) do
    {_, _, {transport, limit, _, select, metrics, meta, _, _}, _, _, _, keep} = w

    frame =
      if select,
        do: selected(select.(type, codec, prepared), seq + 1),
        else: codec.frame(prepared, seq + 1)

    if frame == :skip do
      more(n, seq, kept, size, ts, next, ev, li, now, w)
    else
      seq = seq + 1
      meta = if meta, do: %{seq: seq, type: type}
      {:ok, ts} = transport.send_frame(ts, frame, meta)
      key = elem(m, tuple_size(m) - 2)
      at = elem(m, tuple_size(m) - 1)
      kept = [if(keep == :own, do: key, else: {keep, key}) | kept]

      now =
        cond do
          at == nil -> now
          metrics == nil -> if RuntimeMetrics.sampled?(seq), do: latency(now, at), else: now
          Metrics.sampled?(seq) -> observe(metrics, now, at, seq)
          true -> now
        end

      counted = metrics != nil and at != nil
      event? = tuple_size(m) == 9
      ev = if counted and event?, do: ev + 1, else: ev
      li = if counted and not event?, do: li + 1, else: li
      buffered = transport.buffered_bytes(ts)

      if buffered > limit,
        do: slow_consumer(buffered, seq, kept, size + 1, ts, next, ev, li, now, w),
        else: more(n, seq, kept, size + 1, ts, next, ev, li, now, w)
    end
  end

  defp selected(:skip, _seq), do: :skip
  defp selected({codec, prepared}, seq), do: codec.frame(prepared, seq)

  defp latency(now, at) do
    now = now || :erlang.system_time(:microsecond)
    RuntimeMetrics.frame_latency(now - at)
    now
  end

  defp observe(metrics, now, at, seq) do
    now = now || :erlang.system_time(:microsecond)
    Metrics.observe(metrics, now - at)
    if RuntimeMetrics.sampled?(seq), do: RuntimeMetrics.frame_latency(now - at)
    now
  end

  defp slow_consumer(buffered, seq, kept, size, ts, next, ev, li, now, w) do
    {state, seq0, _, id, entry, _, _} = w
    state = pack(seq, kept, size, ts, id, entry, next, state)
    :counters.add(counters(), 1, 1)
    RuntimeMetrics.slow_disconnect()
    finish({:stop, {:shutdown, {:slow_consumer, buffered}}, state, {seq - seq0, ev, li, now}})
  end

  # The next queued frame, if any and the batch is not full.
  defp more(n, seq, kept, size, ts, next, ev, li, now, w) when n > 1 do
    receive do
      m when frame?(m) -> loop(m, n - 1, seq, kept, size, ts, next, ev, li, now, w)
    after
      0 -> done(false, seq, kept, size, ts, next, ev, li, w)
    end
  end

  defp more(_n, seq, kept, size, ts, next, ev, li, _now, w),
    do: done(true, seq, kept, size, ts, next, ev, li, w)

  defp carry_more(n, state, seq0, ev, li, now) when n > 1 do
    receive do
      m when frame?(m) -> carry(m, n - 1, state, seq0, ev, li, now)
    after
      0 -> ended(state, false, state.seq - seq0, ev, li)
    end
  end

  defp carry_more(_n, state, seq0, ev, li, _now),
    do: ended(state, true, state.seq - seq0, ev, li)

  defp done(backlog, seq, kept, size, ts, next, ev, li, {state, seq0, _, id, entry, _, _}) do
    state = pack(seq, kept, size, ts, id, entry, next, state)
    ended(state, backlog, seq - seq0, ev, li)
  end

  # The end of a wake-up: what finish/1 does with a tally.
  defp ended(state, backlog, frames, ev, li) do
    state = backlog(state, backlog)
    count(state, frames, ev, li)
    if backlog, do: queued(state), else: {:noreply, state}
  end

  # A wake-up that left frames waiting: past `:queue_limit` of them the
  # session cannot keep up with what it is sent, and stops as a slow
  # consumer (counted as one).
  defp queued(state) do
    {:message_queue_len, queued} = Process.info(self(), :message_queue_len)

    if queued > state.conf.queue_limit do
      :counters.add(counters(), 1, 1)
      RuntimeMetrics.slow_disconnect()
      {:stop, {:shutdown, {:slow_consumer, {:queued, queued}}}, state}
    else
      {:noreply, state}
    end
  end

  # The loop's arguments into the state (and the cached guild's stream
  # number into its entry), in one update.
  defp pack(seq, kept, size, ts, id, %{next: old} = entry, next, state) when old != next do
    %{
      state
      | seq: seq,
        replay: kept,
        replay_size: size,
        transport_state: ts,
        guilds: %{state.guilds | id => %{entry | next: next}}
    }
  end

  defp pack(seq, kept, size, ts, _id, _entry, _next, state),
    do: %{state | seq: seq, replay: kept, replay_size: size, transport_state: ts}

  # A wake-up that found a full batch waiting: a backlog, which must not
  # make every garbage collection copy it, so the queue goes off the heap
  # until a wake-up empties it.
  defp backlog(%State{hot: {_, _, _, _, _, _, _, backlog}} = state, backlog), do: state

  defp backlog(state, backlog) do
    Process.flag(:message_queue_data, if(backlog, do: :off_heap, else: :on_heap))
    heat(%{state | conf: %{state.conf | backlog: backlog}})
  end

  defp take(
         {:"$sb_event", guild_id, all_seq, essential_seq, type, codec, prepared, key, at},
         state,
         tally
       ) do
    case state.guilds do
      %{^guild_id => %{next: next, gaps: gaps, passive: passive} = entry} ->
        stream_seq = if passive, do: essential_seq, else: all_seq

        # The stream's expected number (the usual case) changes only the
        # entry, in the same update as the frame's.
        if stream_seq == next and map_size(gaps) == 0 do
          guilds = %{state.guilds | guild_id => %{entry | next: next + 1}}
          deliver(state, guilds, type, codec, prepared, entry.replay, key, at, true, tally)
        else
          state = check(state, guild_id, entry, stream_seq)
          deliver(state, state.guilds, type, codec, prepared, entry.replay, key, at, true, tally)
        end

      _ ->
        {:ok, state, tally}
    end
  end

  defp take({:"$sb_list", guild_id, codec, prepared, key, at}, state, tally) do
    case state.guilds do
      %{^guild_id => entry} ->
        type = "GUILD_MEMBER_LIST_UPDATE"
        deliver(state, state.guilds, type, codec, prepared, entry.replay, key, at, false, tally)

      _ ->
        {:ok, state, tally}
    end
  end

  # `{frames, event_frames, list_frames, now}` of a wake-up so far (`now`
  # is nil until a sampled frame reads the clock), counted in one go.
  defp finish({:ok, state, tally}) do
    count(state, tally)
    {:noreply, state}
  end

  defp finish({:stop, reason, state, tally}) do
    count(state, tally)
    {:stop, reason, state}
  end

  defp count(state, {frames, events, lists, _now}), do: count(state, frames, events, lists)

  # No frame, nothing counted (events and lists count frames).
  defp count(_state, 0, _events, _lists), do: :ok

  defp count(%State{hot: {_, _, _, _, metrics, _, _, _}}, frames, events, lists) do
    RuntimeMetrics.frames_delivered(frames)
    if metrics, do: Metrics.count(metrics, events, lists)
    :ok
  end

  # The stream's next number is expected; a jump leaves gaps (lost unless
  # they turn up later, which makes them out of order); an old number that
  # fills no gap arrived twice.
  defp check(state, guild_id, %{next: next, gaps: gaps} = entry, seq) do
    cond do
      seq == next ->
        %{state | guilds: %{state.guilds | guild_id => %{entry | next: next + 1}}}

      seq > next ->
        gaps = Enum.reduce(next..(seq - 1), gaps, &Map.put(&2, &1, true))
        %{state | guilds: %{state.guilds | guild_id => %{entry | next: seq + 1, gaps: gaps}}}

      Map.has_key?(gaps, seq) ->
        entry = %{entry | gaps: Map.delete(gaps, seq)}

        conf = %{state.conf | out_of_order: state.conf.out_of_order + 1}
        %{state | guilds: %{state.guilds | guild_id => entry}, conf: conf}

      true ->
        %{state | conf: %{state.conf | duplicated: state.conf.duplicated + 1}}
    end
  end

  defp pending_losses(state),
    do: Enum.reduce(state.guilds, 0, fn {_, entry}, sum -> sum + map_size(entry.gaps) end)

  # `guilds`: the session's guilds after this frame's check (put in the
  # state with the frame's own changes, one update).
  defp deliver(
         %State{conf: %Conf{select: nil}} = state,
         guilds,
         type,
         codec,
         prepared,
         store,
         key,
         at,
         event?,
         tally
       ) do
    frame = codec.frame(prepared, state.seq + 1)
    write(state, guilds, type, frame, store, key, at, event?, tally)
  end

  defp deliver(state, guilds, type, codec, prepared, store, key, at, event?, tally) do
    case state.conf.select.(type, codec, prepared) do
      :skip ->
        {:ok, %{state | guilds: guilds}, tally}

      {codec, prepared} ->
        frame = codec.frame(prepared, state.seq + 1)
        write(state, guilds, type, frame, store, key, at, event?, tally)
    end
  end

  # The state's fields are read in one match (a cold session's state is
  # walked once).
  defp write(state, guilds, type, frame, store, key, at, event?, tally) do
    %State{
      seq: seq,
      transport_state: transport_state,
      replay: replay,
      replay_size: replay_size,
      conf: %Conf{
        transport: transport,
        buffer_limit: buffer_limit,
        replay_limit: replay_limit,
        meta: meta
      }
    } = state

    seq = seq + 1
    meta = if meta, do: %{seq: seq, type: type}
    {:ok, transport_state} = transport.send_frame(transport_state, frame, meta)
    tally = tally(state, tally, at, event?, seq)
    entry = kept(state, store, key)

    state =
      cond do
        replay_size < replay_limit ->
          %{
            state
            | seq: seq,
              guilds: guilds,
              transport_state: transport_state,
              replay: [entry | replay],
              replay_size: replay_size + 1
          }

        replay_limit > 0 ->
          %{
            state
            | seq: seq,
              guilds: guilds,
              transport_state: transport_state,
              replay: [entry],
              replay_size: 1,
              replay_older: replay
          }

        true ->
          %{state | seq: seq, guilds: guilds, transport_state: transport_state}
      end

    buffered = transport.buffered_bytes(transport_state)

    if buffered > buffer_limit do
      :counters.add(counters(), 1, 1)
      RuntimeMetrics.slow_disconnect()
      {:stop, {:shutdown, {:slow_consumer, buffered}}, state, tally}
    else
      {:ok, state, tally}
    end
  end

  # Every frame counts; of a guild's frames (`at` set) some, by the
  # session's number, have their latency taken: in the runtime's histogram
  # (`RuntimeMetrics.sampled?/1`) and in the shared metrics
  # (`Metrics.sampled?/1`, when the session has them; they count a guild's
  # frames only).
  defp tally(%State{conf: %Conf{metrics: nil}}, {frames, events, lists, now}, at, _event?, seq)
       when at != nil and RuntimeMetrics.sampled?(seq) do
    now = now || :erlang.system_time(:microsecond)
    RuntimeMetrics.frame_latency(now - at)
    {frames + 1, events, lists, now}
  end

  defp tally(%State{conf: %Conf{metrics: nil}}, {frames, events, lists, now}, _at, _event?, _seq),
    do: {frames + 1, events, lists, now}

  defp tally(_state, {frames, events, lists, now}, nil, _event?, _seq),
    do: {frames + 1, events, lists, now}

  defp tally(state, {frames, events, lists, now}, at, event?, seq) when Metrics.sampled?(seq) do
    now = now || :erlang.system_time(:microsecond)
    Metrics.observe(state.conf.metrics, now - at)
    if RuntimeMetrics.sampled?(seq), do: RuntimeMetrics.frame_latency(now - at)

    if event?,
      do: {frames + 1, events + 1, lists, now},
      else: {frames + 1, events, lists + 1, now}
  end

  defp tally(_state, {frames, events, lists, now}, _at, true, _seq),
    do: {frames + 1, events + 1, lists, now}

  defp tally(_state, {frames, events, lists, now}, _at, false, _seq),
    do: {frames + 1, events, lists + 1, now}

  # Newest first, as where the guild keeps the frame's parts (the frame is
  # made again on resume), so the session's heap holds no payload for it.
  # Every frame written is kept, so the numbers are implicit (the newest
  # is `seq`, each one below it one less), and a frame of the session's
  # first table (`store`) is kept as its key alone, an immediate: one cons
  # per frame, a small heap (a cold session touches less memory). Two
  # batches: when the current one is full it becomes the older one (the
  # one before is dropped whole), so at least the last `replay_limit` are
  # kept.
  defp kept(%State{conf: %Conf{store: store}}, store, key) when store != nil, do: key
  defp kept(_state, store, key), do: {store, key}

  # `{seq, type, frame}` of every frame after `last_seq`, oldest first.
  defp replay_entries(%State{seq: seq}, last_seq) when last_seq > seq, do: {:error, :invalid_seq}
  defp replay_entries(%State{seq: seq}, seq), do: {:ok, []}

  defp replay_entries(state, last_seq) do
    kept = Enum.take(state.replay ++ state.replay_older, state.conf.replay_limit)
    wanted = state.seq - last_seq

    if length(kept) >= wanted do
      kept
      |> Enum.take(wanted)
      |> Enum.zip(state.seq..(last_seq + 1)//-1)
      |> Enum.reduce_while({:ok, []}, fn {entry, seq}, {:ok, frames} ->
        with {type, codec, prepared} <- kept_frame(state, entry),
             {codec, prepared} <- select(state, type, codec, prepared) do
          {:cont, {:ok, [{seq, type, codec.frame(prepared, seq)} | frames]}}
        else
          _ -> {:halt, {:error, :gone}}
        end
      end)
    else
      {:error, :gone}
    end
  end

  # A frame the guild no longer keeps (or a guild that is gone) is gone; a
  # frame from no guild is kept whole.
  defp kept_frame(%State{conf: %Conf{store: store}}, key) when is_integer(key),
    do: kept_frame(store, key)

  defp kept_frame(%State{}, {store, key}), do: kept_frame(store, key)
  defp kept_frame(nil, frame), do: frame

  defp kept_frame(store, key) do
    case :ets.lookup(store, key) do
      [{^key, type, codec, prepared}] -> {type, codec, prepared}
      [] -> nil
    end
  rescue
    ArgumentError -> nil
  end
end
