defmodule Switchboard.Sim do
  @moduledoc """
  The simulator behind `mix switchboard.sim`: guilds, members and sessions
  on one or more BEAM nodes, driven by a mixed stream of events, checked at
  every session.

  `run/1` builds the guilds (`Switchboard.Cluster.start_guild/2`), starts
  the sessions (`Switchboard.Session`, in-memory `Switchboard.Transport.Sink`,
  90% passive by default, every active one subscribed to the member list's
  `[0, 99]` and one in five also to a second window; `:slow` active ones
  whose client stops reading, so they are disconnected when their buffer
  passes its limit, 4 KiB for them), then for `:duration`
  seconds one driver per guild publishes messages and typing events and
  makes presence changes, joins and leaves. A driver keeps at most
  `:window` event frames in flight (published but not yet written by their
  sessions; twice the sessions by default, so an event to every session
  can be published while the one before is still being written), so the
  run measures sustained throughput, not a queue filling up. The window
  trades throughput for latency: sessions that find more frames waiting
  write more of them per wake-up (bench/RESULTS.md has a sweep). Afterwards it waits for the sessions to drain and adds up, over every
  session, what arrived against what the guild published for it.

  See `mix help switchboard.sim` for the options and the report's fields.
  """

  alias Switchboard.{Cluster, Guild, Peer, Session}
  alias Switchboard.Session.Metrics
  alias Switchboard.Sim.Node, as: SimNode

  import Bitwise

  @defaults [
    mode: :native,
    nodes: 0,
    guilds: 1,
    members: 100_000,
    sessions: 25_000,
    passive: 0.9,
    duration: 20.0,
    seed: 1,
    relay_threshold: 15_000,
    slow: 10,
    window: nil,
    floor: 2.0,
    receiver: :session,
    progress: true
  ]

  @doc "The options `run/1` takes, with their defaults."
  def defaults, do: @defaults

  @doc """
  Runs one simulation and returns its report (a map; see `mix help switchboard.sim`).
  """
  @spec run(keyword()) :: map()
  def run(opts \\ []) do
    opts = Keyword.merge(@defaults, opts)

    unless opts[:receiver] in [:session, :floor],
      do:
        raise(
          ArgumentError,
          "expected :receiver to be :session or :floor, got: #{inspect(opts[:receiver])}"
        )

    mode = opts[:mode]
    Switchboard.Implementation.modules(mode)
    :rand.seed(:exsss, {opts[:seed], 17, 29})
    # The run installs its mode on this node (SimNode.setup/1); the node's
    # own mode is back once the run's guilds and sessions are gone.
    previous = Switchboard.Implementation.mode()

    {peers, nodes} = start_nodes(opts[:nodes], mode)

    try do
      simulate(opts, nodes)
    after
      Enum.each(nodes, &:erpc.call(&1, SimNode, :stop_sessions, []))
      stop_guilds(opts)
      Enum.each(peers, &stop_peer/1)
      Switchboard.Implementation.install(previous)
    end
  end

  defp simulate(opts, nodes) do
    guild_ids = for g <- 1..opts[:guilds], do: 1_000_000 + g
    wait_for_ring(nodes)
    rss_before = total(nodes, :rss)
    slow_before = total(nodes, :slow_disconnects)
    phase = System.monotonic_time(:millisecond)

    members_per_guild = div(opts[:members], opts[:guilds])

    guilds =
      for {guild_id, index} <- Enum.with_index(guild_ids) do
        members = for i <- 1..members_per_guild, do: sim_member(index * 10_000_000 + i)

        {:ok, pid} =
          Cluster.start_guild(guild_id,
            members: members,
            mode: opts[:mode],
            relay_threshold: opts[:relay_threshold]
          )

        {guild_id, pid, index * 10_000_000}
      end

    rss_guilds = total(nodes, :rss)
    phase = progress(opts, "guilds built", phase)
    attached = start_sessions(opts, guilds, nodes)
    progress(opts, "#{attached} sessions attached", phase)
    window = opts[:window] || max(2 * opts[:sessions], 1_000)
    expected = :counters.new(1, [:write_concurrency])
    cpu_before = total(nodes, :cpu_ms)
    started = System.monotonic_time(:millisecond)
    deadline = started + round(opts[:duration] * 1000)
    sampler = start_sampler(nodes, started, opts[:progress])

    drivers =
      for {{guild_id, pid, base}, index} <- Enum.with_index(guilds) do
        ctx = %{
          guild: pid,
          guild_id: guild_id,
          base: base,
          members: members_per_guild,
          sessions_per_guild: div(opts[:sessions], opts[:guilds]),
          seed: opts[:seed] + index,
          deadline: deadline,
          window: div(window, opts[:guilds]),
          expected: expected,
          nodes: nodes
        }

        Task.async(fn -> drive(ctx) end)
      end

    driven = Enum.map(drivers, &Task.await(&1, :infinity))
    finished = drain(nodes, expected)
    cpu_s = (total(nodes, :cpu_ms) - cpu_before) / 1000
    samples = stop_sampler(sampler)
    rss_end = total(nodes, :rss)

    guild_stats = for {_id, pid, _} <- guilds, do: Guild.stats(pid)
    active = Enum.reduce(guild_stats, 0, &(&2 + &1.sessions - &1.passive_sessions))
    finals = Map.new(guild_stats, &{&1.id, {&1.all_seq, &1.essential_seq}})
    totals = Enum.map(nodes, &:erpc.call(&1, SimNode, :totals, [finals], :infinity))
    histogram = merge_histograms(Enum.map(nodes, &:erpc.call(&1, SimNode, :histogram, [])))
    op_histogram = merge_histograms(Enum.map(guild_stats, & &1.op_ns))
    list_histogram = merge_histograms(Enum.map(guild_stats, & &1.list_ns))
    frames = total(nodes, :frames)
    elapsed_s = (finished - started) / 1000
    sum = fn key -> Enum.reduce(totals, 0, &(&2 + &1[key])) end
    lost = sum.(:lost)
    duplicated = sum.(:duplicated)
    out_of_order = sum.(:out_of_order)
    live_sessions = sum.(:sessions)

    %{
      mode: Atom.to_string(opts[:mode]),
      receiver: Atom.to_string(opts[:receiver]),
      nodes: length(nodes),
      placement: placement(nodes, guilds, totals),
      guilds: opts[:guilds],
      members: members_per_guild * opts[:guilds],
      sessions: opts[:sessions],
      sessions_attached: attached,
      passive_fraction: opts[:passive],
      relays: Enum.reduce(guild_stats, 0, &(&2 + &1.relays)),
      duration_s: Float.round(elapsed_s, 2),
      events_published: Enum.reduce(guild_stats, 0, &(&2 + &1.all_seq)),
      essential_events: Enum.reduce(guild_stats, 0, &(&2 + &1.essential_seq)),
      frames_delivered: frames,
      frames_per_s: round(frames / max(elapsed_s, 0.001)),
      cpu_s: Float.round(cpu_s, 2),
      frames_per_cpu_s: round(frames / max(cpu_s, 0.001)),
      latency_ms: %{
        p50: ms(Metrics.percentile(histogram, 0.5)),
        p99: ms(Metrics.percentile(histogram, 0.99)),
        p999: ms(Metrics.percentile(histogram, 0.999))
      },
      member_list_ops: Enum.reduce(guild_stats, 0, &(&2 + &1.member_ops)),
      member_op_us: %{
        p50: us(Metrics.percentile(op_histogram, 0.5)),
        p99: us(Metrics.percentile(op_histogram, 0.99))
      },
      member_list_us: %{
        p50: us(Metrics.percentile(list_histogram, 0.5)),
        p99: us(Metrics.percentile(list_histogram, 0.99))
      },
      driver_ops: Enum.reduce(driven, 0, &(&2 + &1)),
      lost: lost,
      duplicated: duplicated,
      out_of_order: out_of_order,
      slow_disconnects: total(nodes, :slow_disconnects) - slow_before,
      sessions_at_end: live_sessions,
      memory_bytes_per_session: div(max(rss_end - rss_guilds, 0), max(attached, 1)),
      session_process_bytes: div(sum.(:memory), max(live_sessions, 1)),
      memory_bytes_per_member:
        div(
          Enum.reduce(guilds, 0, fn {_, pid, _}, sum -> sum + Guild.memory(pid) end),
          max(opts[:members], 1)
        ),
      memory_rss_bytes_per_member: div(max(rss_guilds - rss_before, 0), max(opts[:members], 1)),
      memory_bytes_total: rss_end,
      window_frames: window,
      verdict: if(lost == 0 and duplicated == 0 and out_of_order == 0, do: "ok", else: "failed"),
      floor:
        if(opts[:floor] > 0,
          do: floor(live_sessions, active, essential_share(guild_stats), opts[:floor])
        ),
      latency_histogram_us: histogram,
      throughput: samples
    }
  end

  # Where the guilds and the sessions ran: node name => counts.
  defp placement(nodes, guilds, totals) do
    nodes
    |> Enum.zip(totals)
    |> Map.new(fn {node, totals} ->
      owned = Enum.count(guilds, fn {_id, pid, _} -> node(pid) == node end)
      {Atom.to_string(node), %{guilds: owned, sessions: totals.sessions}}
    end)
  end

  @doc false
  # Prints `what` and the seconds since `since` (unless `opts[:progress]` is false).
  def progress(opts, what, since) do
    now = System.monotonic_time(:millisecond)

    if opts[:progress],
      do: IO.puts(:stderr, "  #{what} in #{Float.round((now - since) / 1000, 1)} s")

    now
  end

  defp ms(nil), do: nil
  defp ms(us), do: Float.round(us / 1000, 3)
  defp us(nil), do: nil
  defp us(ns), do: Float.round(ns / 1000, 2)

  # ---------------------------------------------------------------------------
  # Members and sessions

  @statuses {:online, :idle, :dnd, :offline, :offline, :offline, :offline, :offline, :offline,
             :offline}
  @roles [{90, "admins"}, {50, "mods"}, {30, "helpers"}, {20, "artists"}, {10, "boosters"}]

  defp sim_member(id) do
    hoist = if :rand.uniform(50) == 1, do: Enum.random(@roles)

    %{
      id: id,
      name: "u" <> Integer.to_string(:rand.uniform(1 <<< 30), 36),
      status: elem(@statuses, :rand.uniform(10) - 1),
      hoist: hoist,
      roles: if(hoist, do: [elem(hoist, 1)], else: [])
    }
  end

  defp start_sessions(opts, guilds, nodes) do
    per_guild = div(opts[:sessions], opts[:guilds])
    slow_every = if opts[:slow] > 0, do: max(div(opts[:sessions], opts[:slow]), 1), else: nil

    specs =
      for {guild_id, _pid, _base} <- guilds, i <- 1..per_guild//1 do
        slow = slow_every != nil and rem(i, slow_every) == 0
        # A client that stops reading is an active one (a passive session
        # gets too little to fill its buffer in a run).
        passive = not slow and :rand.uniform() < opts[:passive]

        ranges =
          cond do
            passive -> []
            :rand.uniform(5) == 1 -> [[0, 99], second_window()]
            true -> [[0, 99]]
          end

        {guild_id, passive, ranges, slow}
      end

    # Round-robin over the nodes, started in parallel per node.
    specs
    |> Enum.with_index()
    |> Enum.group_by(fn {_, i} -> Enum.at(nodes, rem(i, length(nodes))) end, &elem(&1, 0))
    |> Enum.map(fn {node, specs} ->
      Task.async(fn ->
        :erpc.call(node, SimNode, :start_sessions, [specs, opts[:receiver]], :infinity)
      end)
    end)
    |> Enum.map(&Task.await(&1, :infinity))
    |> Enum.sum()
  end

  defp second_window do
    first = 100 * Enum.random(1..20)
    [first, first + 99]
  end

  defp stop_guilds(opts) do
    for g <- 1..opts[:guilds] do
      case Cluster.lookup_guild(1_000_000 + g) do
        nil -> :ok
        pid -> :erpc.call(node(pid), Guild, :stop, [pid])
      end
    end
  catch
    :exit, _ -> :ok
  end

  # ---------------------------------------------------------------------------
  # Driving

  @contents for n <- 1..64, do: String.duplicate("lorem ipsum ", rem(n * 7, 25) + 2)

  # Returns how many operations it made. The driver stands for the
  # guild's publishers all over a deployment, so it runs at high priority:
  # queued behind the sessions it loads, it would publish only when they
  # let it (a load generator slowed by what it measures under-reports the
  # latency: coordinated omission). The window bounds what it keeps in
  # flight, and it sleeps while the window is full.
  defp drive(ctx) do
    Process.flag(:priority, :high)
    :rand.seed(:exsss, {ctx.seed, 101, 7})
    {sessions, passive} = Guild.session_counts(ctx.guild)
    ctx = Map.merge(ctx, %{total: sessions, active: sessions - passive})

    drive(ctx, 0, ctx.members + 1, System.monotonic_time(:millisecond))
  end

  defp drive(ctx, ops, next_id, refreshed) do
    now = System.monotonic_time(:millisecond)

    if now >= ctx.deadline do
      ops
    else
      {ctx, refreshed} = refresh_counts(ctx, now, refreshed)
      operation = next_operation()
      pace(ctx, frames_at_most(ctx, operation))
      {recipients, next_id} = one_operation(ctx, operation, ops, next_id)
      :counters.add(ctx.expected, 1, recipients)
      drive(ctx, ops + 1, next_id, refreshed)
    end
  end

  defp refresh_counts(ctx, now, refreshed) when now - refreshed < 200, do: {ctx, refreshed}

  defp refresh_counts(ctx, now, _refreshed) do
    {sessions, passive} = Guild.session_counts(ctx.guild)
    {%{ctx | total: sessions, active: sessions - passive}, now}
  end

  # Half messages (one in 20 essential), a quarter typing, 15% presence
  # changes, 5% joins, 5% leaves.
  defp next_operation do
    roll = :rand.uniform(100)

    cond do
      roll <= 50 -> {:message, :rand.uniform(20) == 1}
      roll <= 75 -> :typing
      roll <= 90 -> :presence
      roll <= 95 -> :join
      true -> :leave
    end
  end

  # The event frames an operation makes at most (essential events and
  # member changes reach every session, the rest the active ones).
  defp frames_at_most(ctx, {:message, essential}),
    do: if(essential, do: ctx.total, else: ctx.active)

  defp frames_at_most(ctx, operation) when operation in [:join, :leave], do: ctx.total
  defp frames_at_most(ctx, _operation), do: ctx.active

  defp one_operation(ctx, operation, ops, next_id) do
    case operation do
      {:message, essential} ->
        author = ctx.base + :rand.uniform(ctx.members)

        data = %{
          "id" => ops,
          "channel_id" => ctx.guild_id * 100 + :rand.uniform(20),
          "author" => %{"id" => author, "username" => "u#{author}"},
          "content" => Enum.at(@contents, rem(ops, 64)),
          "mention_everyone" => essential
        }

        {:ok, _} = Guild.publish(ctx.guild, {"MESSAGE_CREATE", data}, essential: essential)
        {if(essential, do: ctx.total, else: ctx.active), next_id}

      :typing ->
        data = %{
          "channel_id" => ctx.guild_id * 100 + :rand.uniform(20),
          "user_id" => ctx.base + :rand.uniform(ctx.members),
          "timestamp" => ops
        }

        {:ok, _} = Guild.publish(ctx.guild, {"TYPING_START", data})
        {ctx.active, next_id}

      :presence ->
        user = ctx.base + :rand.uniform(ctx.members)
        status = Enum.random([:online, :idle, :dnd, :offline])

        case Guild.update_presence(ctx.guild, user, status) do
          :ok -> {ctx.active, next_id}
          {:error, :not_member} -> {0, next_id}
        end

      :join ->
        :ok = Guild.join(ctx.guild, sim_member(ctx.base + next_id))
        {ctx.total, next_id + 1}

      :leave ->
        # Members with no session leave (ids past the sessions).
        user =
          ctx.base + ctx.sessions_per_guild +
            :rand.uniform(max(next_id - ctx.sessions_per_guild, 1))

        case Guild.leave(ctx.guild, user) do
          :ok -> {ctx.total, next_id}
          {:error, :not_member} -> {0, next_id}
        end
    end
  end

  # Waits until the next operation's `frames` fit in the window beside
  # the event frames published and not yet written by their sessions (an
  # operation bigger than the window waits until none are in flight).
  # Frames sent to a session that was then disconnected are never written:
  # when nothing is written for 100 ms (or the run is over) the count of
  # those expected is brought back to what was written, so they cannot
  # stall the run.
  defp pace(ctx, frames),
    do: pace(ctx, frames, total(ctx.nodes, :event_frames), System.monotonic_time(:millisecond))

  defp pace(ctx, frames, last, since) do
    delivered = total(ctx.nodes, :event_frames)
    now = System.monotonic_time(:millisecond)
    in_flight = :counters.get(ctx.expected, 1) - delivered

    cond do
      in_flight + frames <= ctx.window or in_flight <= 0 ->
        :ok

      now >= ctx.deadline ->
        :ok

      delivered == last and now - since > 100 ->
        :counters.put(ctx.expected, 1, delivered)

      true ->
        Process.sleep(1)

        if delivered == last,
          do: pace(ctx, frames, last, since),
          else: pace(ctx, frames, delivered, now)
    end
  end

  # Waits until every published event frame is written (or nothing moves
  # for a second: frames for sessions that disconnected never are);
  # returns when the last frame was written.
  defp drain(nodes, expected) do
    drain(nodes, expected, total(nodes, :frames), System.monotonic_time(:millisecond), 0)
  end

  defp drain(nodes, expected, last, last_change, idle_rounds) do
    Process.sleep(20)
    frames = total(nodes, :frames)
    now = System.monotonic_time(:millisecond)

    cond do
      frames != last ->
        drain(nodes, expected, frames, now, 0)

      :counters.get(expected, 1) <= total(nodes, :event_frames) and idle_rounds >= 2 ->
        last_change

      idle_rounds >= 50 ->
        last_change

      true ->
        drain(nodes, expected, frames, last_change, idle_rounds + 1)
    end
  end

  # ---------------------------------------------------------------------------
  # The floor: what delivering the same kind of frames costs with nothing
  # but send/2 and a receive loop (no guild, no relay, no session work), on
  # the same machine in the same run. As many receivers as sessions; one
  # process sends each "event" (a shared binary) to the active ones, or to
  # all of them for the run's share of essential events, one send/2 each,
  # for about `seconds`; each receiver only counts.

  defp essential_share(guild_stats) do
    all = Enum.reduce(guild_stats, 0, &(&2 + &1.all_seq))
    essential = Enum.reduce(guild_stats, 0, &(&2 + &1.essential_seq))
    if all == 0, do: 0.0, else: essential / all
  end

  defp floor(receivers, active, essential_share, seconds) do
    parent = self()
    frame = :binary.copy(String.duplicate("f", 300))
    pids = for _ <- 1..max(receivers, 1), do: spawn(fn -> floor_receiver(parent, 0) end)
    targets = {pids, Enum.take(pids, max(active, 1)), essential_share}
    deadline = System.monotonic_time(:microsecond) + round(seconds * 1_000_000)
    cpu_before = local_value(:cpu_ms)
    started = System.monotonic_time(:microsecond)
    events = floor_send(targets, frame, deadline, 0)
    for pid <- pids, do: send(pid, :done)
    delivered = Enum.reduce(pids, 0, fn _, sum -> receive(do: ({:floor, n} -> sum + n)) end)
    elapsed = System.monotonic_time(:microsecond) - started
    cpu_s = (local_value(:cpu_ms) - cpu_before) / 1000

    %{
      receivers: length(pids),
      events: events,
      frames: delivered,
      send_loop_frames_per_s: round(delivered * 1_000_000 / max(elapsed, 1)),
      send_loop_frames_per_cpu_s: round(delivered / max(cpu_s, 0.001))
    }
  end

  defp floor_send({all, active, essential_share} = targets, frame, deadline, events) do
    if System.monotonic_time(:microsecond) >= deadline do
      events
    else
      pids = if :rand.uniform() < essential_share, do: all, else: active
      Enum.each(pids, &send(&1, {:frame, frame}))
      floor_send(targets, frame, deadline, events + 1)
    end
  end

  defp floor_receiver(parent, count) do
    receive do
      {:frame, _} -> floor_receiver(parent, count + 1)
      :done -> send(parent, {:floor, count})
    end
  end

  # ---------------------------------------------------------------------------
  # Sampling and progress

  defp start_sampler(nodes, started, progress) do
    parent = self()
    spawn_link(fn -> sample(nodes, started, progress, parent, [], 0) end)
  end

  defp sample(nodes, started, progress, parent, samples, tick) do
    receive do
      {:stop, from} ->
        if progress, do: IO.write(:stderr, "\n")
        elapsed = System.monotonic_time(:millisecond) - started
        last = %{t_ms: elapsed, frames: total(nodes, :frames)}
        send(from, {:samples, Enum.reverse([last | samples])})
    after
      250 ->
        elapsed = System.monotonic_time(:millisecond) - started
        frames = total(nodes, :frames)
        samples = [%{t_ms: elapsed, frames: frames} | samples]

        if progress and rem(tick, 4) == 3 do
          rate =
            case samples do
              [%{frames: now, t_ms: t1}, _, _, _, %{frames: before, t_ms: t0} | _] ->
                (now - before) * 1000 / max(t1 - t0, 1)

              _ ->
                frames * 1000 / max(elapsed, 1)
            end

          IO.write(
            :stderr,
            "\r  #{Float.round(elapsed / 1000, 1)} s  frames #{frames}  " <>
              "#{round(rate)} frames/s  slow disconnects #{total(nodes, :slow_disconnects)}   "
          )
        end

        sample(nodes, started, progress, parent, samples, tick + 1)
    end
  end

  defp stop_sampler(pid) do
    send(pid, {:stop, self()})

    receive do
      {:samples, samples} -> samples
    end
  end

  # ---------------------------------------------------------------------------
  # Nodes

  defp total(nodes, what) do
    Enum.reduce(nodes, 0, fn node, sum -> sum + node_value(node, what) end)
  end

  defp node_value(node, what) when node == node(), do: local_value(what)
  defp node_value(node, what), do: :erpc.call(node, __MODULE__, :local_value, [what])

  @doc false
  def local_value(:frames), do: SimNode.frames()
  def local_value(:event_frames), do: SimNode.event_frames()
  def local_value(:rss), do: SimNode.rss()
  def local_value(:slow_disconnects), do: Session.slow_disconnects()

  def local_value(:cpu_ms) do
    {total, _} = :erlang.statistics(:runtime)
    total
  end

  defp merge_histograms(histograms) do
    histograms
    |> List.flatten()
    |> Enum.reduce(%{}, fn {bound, count}, acc -> Map.update(acc, bound, count, &(&1 + count)) end)
    |> Enum.sort()
  end

  defp start_nodes(0, mode) do
    SimNode.setup(mode)
    {[], [node()]}
  end

  defp start_nodes(count, mode) do
    Peer.ensure_distributed!("switchboard_sim")
    Cluster.refresh()
    SimNode.setup(mode)
    peers = for _ <- 1..count, do: start_peer(mode)
    {peers, [node() | Enum.map(peers, &elem(&1, 1))]}
  end

  defp start_peer(mode) do
    {peer, node} = Peer.start("switchboard_sim_peer", mode: mode)
    :ok = :erpc.call(node, SimNode, :setup, [mode])
    {peer, node}
  end

  defp stop_peer({peer, _node}), do: Peer.stop(peer)

  defp wait_for_ring(nodes, tries \\ 100) do
    if Enum.sort(nodes) == Cluster.nodes() or tries == 0 do
      :ok
    else
      Process.sleep(20)
      wait_for_ring(nodes, tries - 1)
    end
  end
end
