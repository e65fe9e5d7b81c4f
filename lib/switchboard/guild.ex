defmodule Switchboard.Guild do
  @moduledoc """
  One process per guild: its members, its member list, and the router of its events.

  ## Members

  Members are maps with at least `:id`, `:name`, `:status` (`:online`,
  `:idle`, `:dnd` or `:offline`) and `:hoist` (`nil` or `{position, role_id}`),
  plus anything else (roles, nick...). They are kept in an ETS table owned
  by the guild, so full scans (`scan/3`, `members/1`) run in a worker
  process while the guild goes on routing. The member list is a
  `Switchboard.MemberList` (or its pure twin, see `Switchboard.Implementation`).

  `join/2`, `leave/2`, `update_presence/3` and `update_member/2` change a
  member, send every subscribed session exactly the member-list ops it
  needs (`GUILD_MEMBER_LIST_UPDATE`, each distinct op list encoded once) and
  publish the matching event (`GUILD_MEMBER_ADD`, `GUILD_MEMBER_REMOVE` and
  `GUILD_MEMBER_UPDATE` are essential, `PRESENCE_UPDATE` is not).

  ## Sessions and events

  `Switchboard.Session`s connect with `connect/3` (active or passive) and
  subscribe to member-list ranges with `subscribe_member_list/3`.
  `publish/3` encodes the event once (payload and envelope, see
  `Switchboard.Codec`), and sends it through `Switchboard.Fanout` to every
  active session, or to every session when it is `essential: true`
  (passive sessions get nothing else): local sessions from fan-out groups,
  remote ones in one distribution message per node. Each session splices
  its own sequence number into the prepared frame.

  Above `:relay_threshold` local sessions, the guild spreads them over relay
  processes of at most that many sessions each; it then sends one message
  per relay and the relays do the final fan-out (Discord's relays, at
  15,000 sessions per relay by default). Everything a session receives from
  a guild travels one path (direct or through its relay), so it arrives in
  the order the guild sent it.

  Relays hold only their sessions (as fan-out groups), no member data: a
  member-list update names its sessions, and each relay delivers to those
  that are its own.

  Every event carries the guild's sequence number of all events and, when
  essential, of essential events, so each session can check that it got
  its stream complete and in order.

  ## Priority

  A guild and its relays route: they do a little work per event and then
  wait, while the work an event makes is its sessions'. They run at high
  priority by default, so an event reaches the sessions' mailboxes as soon
  as it is published instead of after every session queued before the
  guild has run: a session then finds several frames waiting when it runs
  and writes them in one wake-up (in the simulator an active session
  writes ~9 frames per wake-up instead of ~1.1, and the node delivers
  more frames per CPU-second, see bench/RESULTS.md, seventh session). A
  router never waits for a session, so it runs only for as long as it
  has messages; what it is sent is paced by its publishers (at normal
  priority beside the sessions, or, as the simulator's driver, by a window
  of frames in flight), and a session that falls behind anyway stops (see
  `Switchboard.Session`'s `:queue_limit`). A guild that must not take
  precedence over other processes can be started with `priority: :normal`.

  ## Metrics

  Guilds, events published, sessions connected, member changes (and the
  member list's time for each) and member-list updates are reported
  through `Switchboard.Metrics`, see `Switchboard.RuntimeMetrics`. Member
  changes reach it in batches: at most 32 changes or 100 ms late, and all
  of them before `stats/1` replies. A change's time (`op_ns` in `stats/1`)
  runs from the guild taking the call to its list updates and its event
  being sent; recording that time comes after.

  ## Resuming

  The guild keeps its latest `:replay_events` frames (events and
  member-list updates, prepared once) in a table that sessions read; a
  session keeps only which of them it sent, under which of its numbers
  (`Switchboard.Session.resume/2`).
  """

  use GenServer

  alias Switchboard.Guild.Relay
  alias Switchboard.RuntimeMetrics
  alias Switchboard.MemberList.Behaviour, as: MemberListContract
  alias Switchboard.Session.Metrics

  @registry Switchboard.Guild.Registry
  @supervisor Switchboard.Guild.Supervisor
  @default_threshold 15_000
  @default_replay_events 4096
  @default_priority :high
  @load_batch 10_000
  @metrics_batch 32
  @metrics_delay_ms 100

  @type member :: %{
          required(:id) => term(),
          required(:name) => binary(),
          required(:status) => :online | :idle | :dnd | :offline,
          required(:hoist) => nil | {integer(), term()},
          optional(atom()) => term()
        }

  @type guild :: GenServer.server()

  # ---------------------------------------------------------------------------
  # Starting and finding

  @doc """
  Starts a guild process (linked), registered under its id on this node.

  ## Options

    * `:id` - the guild's id (required).
    * `:register` - register the id in this node's registry (so `whereis/1`
      finds it). Defaults to `true`; `start/2` registers once the members
      are loaded.
    * `:members` - the initial members. Defaults to `[]`.
    * `:mode` - `:native` or `:pure` (see `Switchboard.Implementation`).
      Defaults to the configured mode.
    * `:relay_threshold` - local sessions above which relays do the final
      fan-out. Defaults to #{@default_threshold}.
    * `:offline` - `:listed` or `:hidden`, as `Switchboard.MemberList.new/1`.
      Defaults to `:listed`.
    * `:on_change` - a function called with `{:put, member}` or
      `{:delete, user_id}` after each change, and with `:stopped` when the
      guild is stopped on purpose (`stop/1`), so a replica can be dropped
      (replication). Defaults to `nil`.
    * `:replay_events` - how many of its latest frames (events and
      member-list updates) the guild keeps for sessions that resume (see
      `Switchboard.Session.resume/2`). Defaults to #{@default_replay_events}.
    * `:name` - a name for the process (`GenServer` names), as well as or
      instead of `:register`. Defaults to none.
    * `:codec` - the `Switchboard.Codec` that prepares its frames.
      Defaults to the mode's (ETF).
    * `:codec_options` - when set, frames are prepared with
      `codec.prepare(type, data, codec_options)` (a codec that takes
      options, e.g. the gateway's, told which variants its sessions need).
      Defaults to `nil` (`prepare/2`).
    * `:priority` - the guild's process priority, which its relays take
      too: `:low`, `:normal` or `:high`. Defaults to `#{inspect(@default_priority)}`
      (see "Priority" above).
    * `:payloads` - a module shaping the data of member events and
      member-list updates (the gateway's Discord shapes):
      `member_event(type, member, guild_id)` and
      `member_list_update(guild_id, ops, counts, member_table)` (counts as
      `Switchboard.MemberList.counts/1`; the table holds `{user_id, member}`).
      Defaults to `nil` (the runtime's own shapes).
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts) do
    Keyword.fetch!(opts, :id)
    priority = Keyword.get(opts, :priority, @default_priority)

    unless priority in [:low, :normal, :high],
      do:
        raise(ArgumentError, "priority must be :low, :normal or :high, got: #{inspect(priority)}")

    {name, opts} = Keyword.pop(opts, :name)
    GenServer.start_link(__MODULE__, opts, if(name, do: [name: name], else: []))
  end

  @doc false
  def child_spec(opts) do
    %{id: {__MODULE__, opts[:id]}, start: {__MODULE__, :start_link, [opts]}, restart: :transient}
  end

  @doc """
  Starts guild `id` under this node's guild supervisor; `{:ok, pid}` also
  when it already runs (its members are then left as they are). Options as
  `start_link/1`; the `:members` are loaded after the start, in batches
  (`load/2`), so the supervisor never holds a copy of them.
  """
  @spec start(term(), keyword()) :: {:ok, pid()} | {:error, term()}
  def start(id, opts \\ []) do
    {members, opts} = Keyword.pop(opts, :members, [])

    opts = opts |> Keyword.put(:id, id) |> Keyword.put(:register, false)

    with nil <- whereis(id),
         {:ok, pid} <- DynamicSupervisor.start_child(@supervisor, {__MODULE__, opts}) do
      # Found by id only once it has its members.
      load(pid, members)

      case GenServer.call(pid, :register) do
        :ok -> {:ok, pid}
        {:already_started, other} -> {:ok, other}
      end
    else
      pid when is_pid(pid) -> {:ok, pid}
      {:error, _} = error -> error
    end
  end

  @doc """
  Adds `members` to the guild in batches of #{@load_batch} (a call each): for
  building a guild, before sessions connect (no update or event is sent
  for them).
  """
  @spec load(guild(), [member()]) :: :ok
  def load(guild, members) do
    members
    |> Stream.each(&checked/1)
    |> Stream.chunk_every(@load_batch)
    |> Enum.each(&GenServer.call(guild, {:load, &1}, :infinity))
  end

  @doc "The pid of guild `id` on this node, or `nil`."
  @spec whereis(term()) :: pid() | nil
  def whereis(id) do
    case Registry.lookup(@registry, id) do
      [{pid, _}] -> pid
      [] -> nil
    end
  end

  @doc "The ids of the guilds running on this node."
  @spec local_ids() :: [term()]
  def local_ids, do: Registry.select(@registry, [{{:"$1", :_, :_}, [], [:"$1"]}])

  @doc "Stops the guild normally (its sessions see it go down)."
  @spec stop(guild()) :: :ok
  def stop(guild), do: GenServer.stop(guild, :normal)

  # ---------------------------------------------------------------------------
  # Members

  @doc """
  Adds (or replaces) a member.

  A member that `Switchboard.MemberList` would refuse raises `ArgumentError`
  here, in the caller (as do bad ranges in `connect/3` and
  `subscribe_member_list/3`): the guild never sees it.
  """
  @spec join(guild(), member()) :: :ok
  def join(guild, member), do: GenServer.call(guild, {:put, checked(member), :join})

  @doc "Removes a member; `{:error, :not_member}` when absent."
  @spec leave(guild(), term()) :: :ok | {:error, :not_member}
  def leave(guild, user_id), do: GenServer.call(guild, {:leave, user_id})

  @doc "Changes a member's status; `{:error, :not_member}` when absent."
  @spec update_presence(guild(), term(), :online | :idle | :dnd | :offline) ::
          :ok | {:error, :not_member}
  def update_presence(guild, user_id, status) when status in [:online, :idle, :dnd, :offline],
    do: GenServer.call(guild, {:presence, user_id, status})

  @doc "Replaces a member's data (name, hoist, roles...); `{:error, :not_member}` when absent."
  @spec update_member(guild(), member()) :: :ok | {:error, :not_member}
  def update_member(guild, member), do: GenServer.call(guild, {:put, checked(member), :update})

  @doc "The member with `user_id`, read from the guild's table without a call to the guild."
  @spec member(guild(), term()) :: member() | nil
  def member(guild, user_id) do
    case :ets.lookup(table(guild), user_id) do
      [{_, member}] -> member
      [] -> nil
    end
  end

  @doc """
  Folds `fun` over every `{user_id, member}` in a worker process (the guild is
  not blocked while it runs) and returns the result.
  """
  @spec scan(guild(), (tuple(), acc -> acc), acc) :: acc when acc: term()
  def scan(guild, fun, acc) do
    table = table(guild)
    Task.async(fn -> :ets.foldl(fun, acc, table) end) |> Task.await(:infinity)
  end

  @doc "Every member (read by a worker, see `scan/3`)."
  @spec members(guild()) :: [member()]
  def members(guild), do: scan(guild, fn {_id, member}, acc -> [member | acc] end, [])

  @doc "The guild's member list value (a snapshot, for checks)."
  @spec member_list(guild()) :: term()
  def member_list(guild), do: GenServer.call(guild, :member_list)

  defp table(guild), do: GenServer.call(guild, :table)

  defp checked(member) do
    MemberListContract.member!(member)
    member
  end

  # ---------------------------------------------------------------------------
  # Sessions and events

  @doc """
  Connects a session process; the guild monitors it.

  Returns `{:ok, guild_id, all_seq, essential_seq, replay}`: the sequence
  numbers of the last events published before it joined (its streams
  continue from there) and the table of the guild's latest frames (each
  message to a session names its key there, so a session keeps only keys
  for `Switchboard.Session.resume/2`).

  ## Options

    * `:passive` - only essential events. Defaults to `false`.
    * `:ranges` - member-list ranges to subscribe at once. Defaults to `[]`.
  """
  @spec connect(guild(), pid(), keyword()) ::
          {:ok, term(), non_neg_integer(), non_neg_integer(), :ets.tid()}
  def connect(guild, session, opts \\ []) when is_pid(session) do
    opts = Keyword.validate!(opts, passive: false, ranges: [])
    MemberListContract.ranges!(opts[:ranges])
    GenServer.call(guild, {:connect, session, opts[:passive], opts[:ranges]})
  end

  @doc "Replaces a connected session's member-list ranges (see `Switchboard.MemberList.subscribe/3`)."
  @spec subscribe_member_list(guild(), pid(), [[non_neg_integer()]]) :: :ok | {:error, term()}
  def subscribe_member_list(guild, session, ranges) do
    MemberListContract.ranges!(ranges)
    GenServer.call(guild, {:subscribe, session, ranges})
  end

  @doc """
  Publishes `{type, data}` to the guild's sessions; returns `{:ok, all_seq}`.

  ## Options

    * `:essential` - also to passive sessions. Defaults to `false`.
    * `:at` - the publish time (`System.system_time(:microsecond)`), carried
      to the sessions for latency. Defaults to now.
  """
  @spec publish(guild(), {String.t(), term()}, keyword()) :: {:ok, pos_integer()}
  def publish(guild, {type, data}, opts \\ []) when is_binary(type) do
    essential = Keyword.get(opts, :essential, false)
    at = Keyword.get_lazy(opts, :at, fn -> System.system_time(:microsecond) end)
    GenServer.call(guild, {:publish, type, data, essential, at}, :infinity)
  end

  @doc """
  The guild's counters: members, sessions (local, remote, passive), relays,
  `all_seq`/`essential_seq`, `member_ops`, `list_ns` (the histogram of the
  time the member list took for each change, in ns) and `op_ns` (of the
  time the guild spent on each join/leave/presence/update, in ns).
  """
  @spec stats(guild()) :: map()
  def stats(guild), do: GenServer.call(guild, :stats)

  @doc """
  `{sessions, passive_sessions}`: the two counts of `stats/1`, without its
  histograms (cheap enough to poll).
  """
  @spec session_counts(guild()) :: {non_neg_integer(), non_neg_integer()}
  def session_counts(guild), do: GenServer.call(guild, :session_counts)

  @doc """
  Bytes the guild holds: its member table, its process (a pure member list
  lives on its heap) and a native member list's own memory. Walks the
  list, so it is for reports, not for polling.
  """
  @spec memory(guild()) :: non_neg_integer()
  def memory(guild), do: GenServer.call(guild, :memory, :infinity)

  # ---------------------------------------------------------------------------
  # Server

  @impl true
  def init(opts) do
    # A backlog of messages must not make every garbage collection copy it.
    Process.flag(:message_queue_data, :off_heap)

    opts =
      Keyword.validate!(opts, [
        :id,
        members: [],
        mode: nil,
        relay_threshold: @default_threshold,
        offline: :listed,
        on_change: nil,
        replay_events: @default_replay_events,
        register: true,
        codec: nil,
        codec_options: nil,
        payloads: nil,
        priority: @default_priority
      ])

    Process.flag(:priority, opts[:priority])

    modules = Switchboard.Implementation.modules(opts[:mode] || Switchboard.Implementation.mode())
    RuntimeMetrics.guild_started()
    table = :ets.new(__MODULE__, [:set, :protected, read_concurrency: true])
    replay = :ets.new(__MODULE__.Replay, [:set, :protected, read_concurrency: true])
    list = modules.member_list.new(offline: opts[:offline])

    state = %{
      id: opts[:id],
      modules: modules,
      fanout: modules.fanout,
      codec: opts[:codec] || modules.codec,
      codec_options: opts[:codec_options],
      payloads: opts[:payloads],
      table: table,
      replay: replay,
      replay_events: opts[:replay_events],
      frame_key: 0,
      list: list,
      all_seq: 0,
      essential_seq: 0,
      sessions: %{},
      passive_count: 0,
      local: modules.group.new([]),
      local_active: modules.group.new([]),
      local_count: 0,
      relays: nil,
      relay_load: %{},
      threshold: opts[:relay_threshold],
      remote: %{},
      remote_all: [],
      remote_active: [],
      member_ops: 0,
      op_ns: Metrics.new(),
      list_ns: Metrics.new(),
      # Not yet in RuntimeMetrics: {list times of changes, list updates, timer}.
      unreported: {[], 0, nil},
      on_change: opts[:on_change],
      priority: opts[:priority]
    }

    state = load_members(state, opts[:members])

    if opts[:register] do
      case register(state.id) do
        :ok -> {:ok, state}
        {:already_started, pid} -> {:stop, {:already_started, pid}}
      end
    else
      {:ok, state}
    end
  end

  @impl true
  def handle_call({:publish, type, data, essential, at}, _from, state) do
    state = publish_event(state, type, data, essential, at)
    {:reply, {:ok, state.all_seq}, state}
  end

  def handle_call({:put, member, kind}, _from, state) do
    started = System.monotonic_time()
    exists = :ets.member(state.table, member[:id])

    if kind == :update and not exists do
      {:reply, {:error, :not_member}, state}
    else
      type = if exists and kind == :update, do: "GUILD_MEMBER_UPDATE", else: "GUILD_MEMBER_ADD"
      state = put_member(state, member, type, true, started)
      {:reply, :ok, state}
    end
  end

  def handle_call({:presence, user_id, status}, _from, state) do
    started = System.monotonic_time()

    case :ets.lookup(state.table, user_id) do
      [{_, member}] ->
        member = %{member | status: status}
        data = event_data(state, "PRESENCE_UPDATE", member)
        {:reply, :ok, put_member(state, member, {"PRESENCE_UPDATE", data}, false, started)}

      [] ->
        {:reply, {:error, :not_member}, state}
    end
  end

  def handle_call({:leave, user_id}, _from, state) do
    started = System.monotonic_time()

    with [{_, member}] <- :ets.lookup(state.table, user_id) do
      :ets.delete(state.table, user_id)

      {{updates, list}, list_time} =
        timed(fn -> state.modules.member_list.delete(state.list, user_id) end)

      at = System.system_time(:microsecond)
      state = send_list_updates(%{state | list: list}, updates, at)
      replicate(state, {:delete, user_id})
      data = event_data(state, "GUILD_MEMBER_REMOVE", member)
      state = publish_event(state, "GUILD_MEMBER_REMOVE", data, true, at)
      {:reply, :ok, count_op(state, started, list_time)}
    else
      [] -> {:reply, {:error, :not_member}, state}
    end
  end

  def handle_call({:connect, pid, passive, ranges}, _from, state) do
    state = if Map.has_key?(state.sessions, pid), do: drop_session(state, pid), else: state
    state = add_session(state, pid, passive)
    RuntimeMetrics.guild_connect()
    reply = {:ok, state.id, state.all_seq, state.essential_seq, state.replay}
    # The sync may reach the session before this reply: it waits for the
    # reply first, so it reads the sync as a frame of this guild.
    state = if ranges == [], do: state, else: subscribe(state, pid, ranges)
    {:reply, reply, state}
  end

  def handle_call({:subscribe, pid, ranges}, _from, state) do
    if Map.has_key?(state.sessions, pid) do
      {:reply, :ok, subscribe(state, pid, ranges)}
    else
      {:reply, {:error, :not_connected}, state}
    end
  end

  def handle_call({:load, members}, _from, state), do: {:reply, :ok, load_members(state, members)}

  # A second guild of the same id (started at the same time) gives way.
  def handle_call(:register, _from, state) do
    case register(state.id) do
      :ok -> {:reply, :ok, state}
      {:already_started, pid} -> {:stop, :normal, {:already_started, pid}, state}
    end
  end

  def handle_call(:memory, _from, state), do: {:reply, guild_memory(state), state}
  def handle_call(:table, _from, state), do: {:reply, state.table, state}
  def handle_call(:member_list, _from, state), do: {:reply, state.list, state}

  def handle_call(:session_counts, _from, state),
    do: {:reply, {map_size(state.sessions), state.passive_count}, state}

  def handle_call(:stats, _from, state) do
    state = flush_member_metrics(state)

    stats = %{
      id: state.id,
      mode: state.modules.mode,
      members: :ets.info(state.table, :size),
      sessions: map_size(state.sessions),
      passive_sessions: state.passive_count,
      local_sessions: state.local_count,
      remote_sessions: map_size(state.remote),
      relays: if(state.relays, do: tuple_size(state.relays), else: 0),
      relay_pids: if(state.relays, do: Tuple.to_list(state.relays), else: []),
      all_seq: state.all_seq,
      essential_seq: state.essential_seq,
      member_ops: state.member_ops,
      op_ns: Metrics.histogram(state.op_ns),
      list_ns: Metrics.histogram(state.list_ns)
    }

    {:reply, stats, state}
  end

  @impl true
  def handle_info({:DOWN, _ref, :process, pid, _reason}, state) do
    {:noreply, drop_session(state, pid)}
  end

  def handle_info({:timeout, timer, :flush_member_metrics}, %{unreported: {_, _, timer}} = state) do
    {times, updates, _} = state.unreported
    {:noreply, flush_member_metrics(%{state | unreported: {times, updates, nil}})}
  end

  def handle_info(_other, state), do: {:noreply, state}

  # Stopped on purpose (stop/1): its replica goes too, or the backup node
  # would bring the guild back when this node leaves. A guild handed over
  # to another node stops with {:shutdown, :moved} and keeps it.
  @impl true
  def terminate(:normal, state) do
    flush_member_metrics(state)
    replicate(state, :stopped)
  end

  def terminate(_reason, state) do
    flush_member_metrics(state)
    :ok
  end

  defp register(id) do
    case Registry.register(@registry, id, nil) do
      {:ok, _} -> :ok
      {:error, {:already_registered, pid}} -> {:already_started, pid}
    end
  end

  # ---------------------------------------------------------------------------
  # Members

  defp load_members(state, members) do
    list =
      Enum.reduce(members, state.list, fn member, list ->
        {_, list} = state.modules.member_list.put(list, member)
        :ets.insert(state.table, {member.id, member})
        list
      end)

    %{state | list: list}
  end

  defp put_member(state, member, event, essential, started) do
    {{updates, list}, list_time} =
      timed(fn -> state.modules.member_list.put(state.list, member) end)

    :ets.insert(state.table, {member.id, member})
    at = System.system_time(:microsecond)
    state = send_list_updates(%{state | list: list}, updates, at)
    replicate(state, {:put, member})

    {type, data} =
      case event do
        {type, data} -> {type, data}
        type -> {type, event_data(state, type, member)}
      end

    state = publish_event(state, type, data, essential, at)
    count_op(state, started, list_time)
  end

  defp event_data(%{payloads: nil} = state, "PRESENCE_UPDATE", member),
    do: %{"user_id" => member.id, "status" => Atom.to_string(member.status)} |> tag(state, nil)

  defp event_data(%{payloads: nil} = state, "GUILD_MEMBER_REMOVE", member),
    do: %{"user_id" => member.id} |> tag(state, "guild_id")

  defp event_data(%{payloads: nil} = state, _type, member) do
    %{"user_id" => member.id, "name" => member.name, "status" => Atom.to_string(member.status)}
    |> tag(state, "guild_id")
  end

  defp event_data(%{payloads: payloads} = state, type, member),
    do: payloads.member_event(type, member, state.id)

  defp tag(data, _state, nil), do: data
  defp tag(data, state, key), do: Map.put(data, key, state.id)

  # The member list's share of a change (native time units).
  defp timed(fun) do
    started = System.monotonic_time()
    result = fun.()
    {result, System.monotonic_time() - started}
  end

  # A change is handled once its list updates and its event are sent: the
  # clock stops there, and recording the two times comes after (the
  # stopwatch is not part of what it times). The runtime's own metrics of
  # member changes are handed to `Switchboard.Metrics` in batches (see
  # `flush_member_metrics/1`): after a burst of other processes' work every
  # call into another module is a cache miss or several, and a change paid
  # two of them for its counter and histogram.
  defp count_op(state, started, list_time) do
    op_time = System.monotonic_time() - started
    Metrics.observe(state.op_ns, System.convert_time_unit(op_time, :native, :nanosecond))
    Metrics.observe(state.list_ns, System.convert_time_unit(list_time, :native, :nanosecond))
    {times, updates, timer} = state.unreported
    times = [list_time | times]
    state = %{state | member_ops: state.member_ops + 1, unreported: {times, updates, timer}}

    if length(times) >= @metrics_batch,
      do: flush_member_metrics(state),
      else: unreported(state, 0)
  end

  # Adds `updates` list updates to what RuntimeMetrics has not been told,
  # and makes sure a timer will tell it.
  defp unreported(%{unreported: {times, count, timer}} = state, updates) do
    timer = timer || :erlang.start_timer(@metrics_delay_ms, self(), :flush_member_metrics)
    %{state | unreported: {times, count + updates, timer}}
  end

  # Member changes (and the list updates they and subscribes sent) reach
  # `Switchboard.RuntimeMetrics` at most 32 changes or 100 ms late, and
  # before a reader of the guild's counters (`stats/1`) has its reply.
  defp flush_member_metrics(%{unreported: {[], 0, _}} = state), do: state

  defp flush_member_metrics(%{unreported: {times, updates, timer}} = state) do
    RuntimeMetrics.member_changes(times)
    RuntimeMetrics.member_list_updates(updates)
    if timer, do: :erlang.cancel_timer(timer, async: true, info: false)
    %{state | unreported: {[], 0, nil}}
  end

  defp replicate(%{on_change: nil}, _change), do: :ok
  defp replicate(%{on_change: fun}, change), do: fun.(change)

  # ---------------------------------------------------------------------------
  # Sessions

  defp add_session(state, pid, passive) do
    ref = Process.monitor(pid)
    state = %{state | passive_count: state.passive_count + if(passive, do: 1, else: 0)}

    if node(pid) == node() do
      state = %{state | local_count: state.local_count + 1}
      state = maybe_engage_relays(state)

      case state.relays do
        nil ->
          state.modules.group.add(state.local, pid)
          unless passive, do: state.modules.group.add(state.local_active, pid)
          put_session(state, pid, {passive, nil, ref})

        relays ->
          index = lightest_relay(state)
          send(elem(relays, index), {:"$sb_add", pid, passive})
          state = %{state | relay_load: Map.update!(state.relay_load, index, &(&1 + 1))}
          put_session(state, pid, {passive, index, ref})
      end
    else
      state = put_session(state, pid, {passive, :remote, ref})
      refresh_remote(%{state | remote: Map.put(state.remote, pid, passive)})
    end
  end

  defp put_session(state, pid, entry),
    do: %{state | sessions: Map.put(state.sessions, pid, entry)}

  defp drop_session(state, pid) do
    case Map.pop(state.sessions, pid) do
      {nil, _} ->
        state

      {{passive, where, ref}, sessions} ->
        Process.demonitor(ref, [:flush])
        {_, list} = state.modules.member_list.unsubscribe(state.list, pid)
        state = %{state | sessions: sessions, list: list}
        state = %{state | passive_count: state.passive_count - if(passive, do: 1, else: 0)}

        case where do
          :remote ->
            refresh_remote(%{state | remote: Map.delete(state.remote, pid)})

          nil ->
            state.modules.group.remove(state.local, pid)
            state.modules.group.remove(state.local_active, pid)
            %{state | local_count: state.local_count - 1}

          index ->
            send(elem(state.relays, index), {:"$sb_remove", pid})
            load = Map.update!(state.relay_load, index, &(&1 - 1))
            %{state | local_count: state.local_count - 1, relay_load: load}
        end
    end
  end

  defp refresh_remote(state) do
    %{
      state
      | remote_all: Map.keys(state.remote),
        remote_active: for({pid, false} <- state.remote, do: pid)
    }
  end

  # Past the threshold, every local session moves to a relay (direct sends
  # made so far are already in the sessions' mailboxes, so nothing is
  # overtaken); later sessions go to the least loaded relay, a new one when
  # all are full.
  defp maybe_engage_relays(%{relays: nil, local_count: count, threshold: threshold} = state)
       when count > threshold do
    relay_count = div(count + threshold - 1, threshold)
    relays = for _ <- 1..relay_count, do: start_relay(state)

    state = %{
      state
      | relays: List.to_tuple(relays),
        relay_load: Map.new(0..(relay_count - 1), &{&1, 0})
    }

    Enum.reduce(state.sessions, state, fn
      {pid, {passive, nil, ref}}, state ->
        index = lightest_relay(state)
        send(elem(state.relays, index), {:"$sb_add", pid, passive})
        state.modules.group.remove(state.local, pid)
        state.modules.group.remove(state.local_active, pid)
        load = Map.update!(state.relay_load, index, &(&1 + 1))
        %{state | relay_load: load} |> put_session(pid, {passive, index, ref})

      _, state ->
        state
    end)
  end

  defp maybe_engage_relays(%{relays: nil} = state), do: state

  defp maybe_engage_relays(%{relays: relays, threshold: threshold} = state) do
    if Enum.all?(state.relay_load, fn {_, load} -> load >= threshold end) do
      index = tuple_size(relays)
      relays = Tuple.append(relays, start_relay(state))
      %{state | relays: relays, relay_load: Map.put(state.relay_load, index, 0)}
    else
      state
    end
  end

  defp start_relay(state) do
    {:ok, pid} = Relay.start_link(state.modules, state.priority)
    pid
  end

  defp lightest_relay(state) do
    {index, _} = Enum.min_by(state.relay_load, fn {index, load} -> {load, index} end)
    index
  end

  defp subscribe(state, pid, ranges) do
    RuntimeMetrics.member_list_subscribe()
    {updates, list} = state.modules.member_list.subscribe(state.list, pid, ranges)
    send_list_updates(%{state | list: list}, updates, System.system_time(:microsecond))
  end

  # ---------------------------------------------------------------------------
  # Delivery

  defp publish_event(state, type, data, essential, at) do
    prepared = prepare(state, type, data)
    all_seq = state.all_seq + 1
    {key, state} = keep_frame(state, type, prepared)

    {essential_seq, target} =
      if essential, do: {state.essential_seq + 1, :all}, else: {state.essential_seq, :active}

    message =
      {:"$sb_event", state.id, all_seq, essential && essential_seq, type, state.codec, prepared,
       key, at}

    fan_out(state, target, message)
    RuntimeMetrics.event_published(essential)
    %{state | all_seq: all_seq, essential_seq: essential_seq}
  end

  defp prepare(%{codec_options: nil, codec: codec}, type, data), do: codec.prepare(type, data)

  defp prepare(%{codec_options: opts, codec: codec}, type, data),
    do: codec.prepare(type, data, opts)

  # The latest frames, shared by every session for resuming: keyed by a
  # counter, the oldest dropped past the limit.
  defp keep_frame(state, type, prepared) do
    key = state.frame_key + 1
    :ets.insert(state.replay, {key, type, state.codec, prepared})
    if key > state.replay_events, do: :ets.delete(state.replay, key - state.replay_events)
    {key, %{state | frame_key: key}}
  end

  defp fan_out(state, target, message) do
    case state.relays do
      nil ->
        group = if target == :all, do: state.local, else: state.local_active
        state.fanout.send(group, message)

      relays ->
        to_relays(relays, {:"$sb_relay", target, message})
    end

    case if target == :all, do: state.remote_all, else: state.remote_active do
      [] -> :ok
      remote -> state.fanout.send(remote, message, pack: :binary)
    end
  end

  # A handful of relays: one send/2 each (the fan-out modules are for the
  # thousands of sessions behind them).
  defp to_relays(relays, message) do
    for index <- 0..(tuple_size(relays) - 1), do: send(elem(relays, index), message)
    :ok
  end

  defp send_list_updates(state, [], _at), do: state

  defp send_list_updates(state, updates, at) do
    state = unreported(state, length(updates))
    counts = if state.payloads, do: state.modules.member_list.counts(state.list)

    Enum.reduce(updates, state, fn {pids, ops}, state ->
      data =
        if state.payloads,
          do: state.payloads.member_list_update(state.id, ops, counts, state.table),
          else: %{"guild_id" => state.id, "ops" => ops}

      type = "GUILD_MEMBER_LIST_UPDATE"
      prepared = prepare(state, type, data)
      {key, state} = keep_frame(state, type, prepared)
      message = {:"$sb_list", state.id, state.codec, prepared, key, at}

      case state.relays do
        nil ->
          state.fanout.send(pids, message)

        relays ->
          to_relays(relays, {:"$sb_relay_to", pids, message})

          if map_size(state.remote) > 0 do
            state.fanout.send(Enum.filter(pids, &(node(&1) != node())), message)
          end
      end

      state
    end)
  end

  # The member table, this process (a pure member list lives on its heap)
  # and a native member list's own memory.
  defp guild_memory(state) do
    words = :ets.info(state.table, :memory)
    {:memory, process} = Process.info(self(), :memory)
    list_module = state.modules.member_list

    native =
      if function_exported?(list_module, :memory, 1), do: list_module.memory(state.list), else: 0

    words * :erlang.system_info(:wordsize) + process + native
  end
end
