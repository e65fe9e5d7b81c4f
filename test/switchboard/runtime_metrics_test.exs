defmodule Switchboard.RuntimeMetricsTest do
  # Reads the runtime's global metrics: no other test starts guilds or
  # sessions beside this one.
  use ExUnit.Case, async: false

  import Switchboard.Test.RuntimeClient, only: [member: 1, member: 2]

  alias Switchboard.{Guild, Metrics, RuntimeMetrics, Session}

  defp counter(snapshot, name, tags), do: Map.get(snapshot.counters, {name, tags}, 0)

  defp histogram_count(snapshot, name) do
    case snapshot.histograms[{name, []}] do
      nil -> 0
      summary -> summary.count
    end
  end

  # Processes alive now that run `module`'s server, found without the runtime's help.
  defp running(module) do
    Enum.count(Process.list(), fn pid ->
      match?(
        {:dictionary, %{"$initial_call": {^module, :init, 1}}},
        with(
          {:dictionary, dict} <- Process.info(pid, :dictionary),
          do: {:dictionary, Map.new(dict)}
        )
      )
    end)
  end

  # Gauges follow deaths through the semaphore's monitors: wait for them to
  # agree with the processes alive (recounted each try: a process left by
  # another test may end meanwhile). Returns {gauges, processes}.
  defp gauges_settle(tries \\ 100) do
    RuntimeMetrics.refresh()
    gauges = Metrics.snapshot().gauges
    seen = {gauges[{"switchboard.sessions.connected", []}], gauges[{"switchboard.guilds", []}]}
    alive = {running(Session), running(Guild)}

    if seen == alive or tries == 0 do
      {seen, alive}
    else
      Process.sleep(10)
      gauges_settle(tries - 1)
    end
  end

  test "a small run's metrics match the runtime's own counts exactly" do
    {sessions_before, guilds_before} = {running(Session), running(Guild)}
    before = Metrics.snapshot()

    guilds =
      for g <- 1..2 do
        members = for i <- 1..40, do: member(g * 1_000 + i, status: :online)
        start_supervised!({Guild, id: {:metrics_run, g}, members: members}, id: {:guild, g})
      end

    sessions =
      for {guild, g} <- Enum.with_index(guilds), n <- 1..15 do
        session = start_supervised!({Session, []}, id: {:session, g, n})
        opts = if rem(n, 3) == 0, do: [passive: true], else: [ranges: [[0, 19]]]
        :ok = Session.attach(session, guild, opts)
        session
      end

    for {guild, g} <- Enum.with_index(guilds, 1) do
      for n <- 1..10, do: {:ok, _} = Guild.publish(guild, {"MESSAGE_CREATE", %{"n" => n}})
      {:ok, _} = Guild.publish(guild, {"GUILD_UPDATE", %{}}, essential: true)
      :ok = Guild.update_presence(guild, g * 1_000 + 1, :idle)
      :ok = Guild.join(guild, member(g * 1_000 + 99))
      :ok = Guild.leave(guild, g * 1_000 + 2)
      {:error, :not_member} = Guild.leave(guild, :nobody)
    end

    # Every frame sent is written once each session has answered.
    stats = Enum.map(sessions, &Session.stats/1)
    guild_stats = Enum.map(guilds, &Guild.stats/1)
    assert running(Session) >= 30 and running(Guild) >= 2
    {gauges, alive} = gauges_settle()
    assert gauges == alive

    after_ = Metrics.snapshot()
    delta = fn name, tags -> counter(after_, name, tags) - counter(before, name, tags) end
    frames = Enum.sum(Enum.map(stats, & &1.frames))
    assert frames > 0
    assert delta.("switchboard.frames.delivered", []) == frames

    # One frame in 8 by each session's own numbering has its latency taken.
    sampled = Enum.sum(Enum.map(stats, &div(&1.seq, 8)))

    assert histogram_count(after_, "switchboard.publish_to_frame_us") -
             histogram_count(before, "switchboard.publish_to_frame_us") == sampled

    published = Enum.sum(Enum.map(guild_stats, & &1.all_seq))
    essential = Enum.sum(Enum.map(guild_stats, & &1.essential_seq))
    assert delta.("switchboard.guild.events", essential: false) == published - essential
    assert delta.("switchboard.guild.events", essential: true) == essential
    assert delta.("switchboard.guild.connects", []) == length(sessions)

    member_ops = Enum.sum(Enum.map(guild_stats, & &1.member_ops))
    assert member_ops == 6
    assert delta.("switchboard.member_list.ops", []) == member_ops

    assert histogram_count(after_, "switchboard.member_list.change_us") -
             histogram_count(before, "switchboard.member_list.change_us") == member_ops

    assert delta.("switchboard.member_list.subscribes", []) == 20
    assert delta.("switchboard.member_list.updates", []) > 0

    # Deaths: the gauges follow the processes.
    stop_supervised!({:guild, 1})
    for n <- 1..15, do: stop_supervised!({:session, 0, n})
    {gauges, alive} = gauges_settle()
    assert gauges == alive
    assert elem(alive, 0) <= sessions_before + 15 and elem(alive, 1) <= guilds_before + 1
  end

  test "in pure mode the runtime reports to the twins, and the native modules see nothing" do
    Switchboard.Implementation.install(:pure)
    on_exit(fn -> Switchboard.Implementation.install(:native) end)
    assert RuntimeMetrics.snapshot() == Metrics.Pure.snapshot()

    native_before = Metrics.snapshot()
    pure_before = Metrics.Pure.snapshot()
    members = for i <- 1..10, do: member(i, status: :online)
    guild = start_supervised!({Guild, id: {:metrics_pure, 1}, members: members})
    session = start_supervised!({Session, []})
    :ok = Session.attach(session, guild, ranges: [[0, 9]])
    for n <- 1..5, do: {:ok, _} = Guild.publish(guild, {"MESSAGE_CREATE", %{"n" => n}})
    :ok = Guild.update_presence(guild, 1, :idle)

    frames = Session.stats(session).frames
    _ = Guild.stats(guild)
    assert frames >= 6
    native_after = Metrics.snapshot()
    pure_after = Metrics.Pure.snapshot()

    for name <- ["switchboard.frames.delivered", "switchboard.member_list.ops"] do
      assert counter(native_after, name, []) == counter(native_before, name, [])
    end

    assert counter(pure_after, "switchboard.frames.delivered", []) -
             counter(pure_before, "switchboard.frames.delivered", []) == frames

    assert counter(pure_after, "switchboard.member_list.ops", []) -
             counter(pure_before, "switchboard.member_list.ops", []) == 1

    # The gauge counts the session in the twin's semaphore.
    RuntimeMetrics.refresh()
    assert RuntimeMetrics.snapshot().gauges[{"switchboard.sessions.connected", []}] >= 1
  end
end
