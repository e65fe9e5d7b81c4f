defmodule Switchboard.SimTest do
  use ExUnit.Case, async: false

  alias Switchboard.Sim
  alias Switchboard.Sim.Report

  @tiny [
    members: 400,
    sessions: 60,
    passive: 0.5,
    duration: 0.4,
    relay_threshold: 20,
    slow: 2,
    progress: false
  ]

  @tag timeout: 60_000
  test "a tiny run of each mode reports every field, and checks out" do
    for mode <- [:native, :pure] do
      report = Sim.run([mode: mode] ++ @tiny)

      assert report.mode == Atom.to_string(mode)
      assert report.verdict == "ok"
      assert %{lost: 0, duplicated: 0, out_of_order: 0} = report
      assert report.relays >= 3
      assert report.events_published > 0
      assert report.frames_delivered > 0
      assert report.member_list_ops > 0
      assert is_float(report.latency_ms.p99)
      assert report.memory_bytes_per_member > 0

      json = Report.json(report)
      assert json =~ ~s("verdict":"ok")
      assert json =~ ~s("frames_per_s":)
      html = Report.html(report)
      assert html =~ "<svg"
      assert html =~ "polyline"
      assert Report.text(report) =~ "verdict"
      # The node's own mode is back after a run.
      assert Switchboard.Implementation.mode() == :native
      assert Switchboard.Implementation.metrics() == Switchboard.Metrics
    end
  end

  @tag timeout: 60_000
  test "receiver: :floor runs the same traffic into the floor receivers, and checks out" do
    report = Sim.run([receiver: :floor] ++ @tiny)
    assert report.receiver == "floor"
    assert Report.text(report) =~ ~r/receiver +floor/
    assert report.verdict == "ok"
    assert %{lost: 0, duplicated: 0, out_of_order: 0} = report
    assert report.sessions_attached == 60
    assert report.frames_delivered > 0
    assert is_float(report.latency_ms.p99)
    # The two clients that stop reading pass their buffer limit (4 KiB)
    # and are counted as the sessions' are.
    assert report.slow_disconnects == 2
    # Sessions by default; nothing else is taken.
    assert Sim.run(@tiny).receiver == "session"
    assert_raise ArgumentError, ~r/:receiver/, fn -> Sim.run(receiver: :nope) end
  end

  test "a floor receiver checks its guild's stream and lets other messages go" do
    alias Switchboard.Sim.FloorSession
    alias Switchboard.Session.Metrics

    guild = start_supervised!({Switchboard.Guild, id: :floor_check, members: []})
    metrics = Metrics.new()
    {:ok, floor} = FloorSession.start(metrics: metrics)
    # Under the node's session supervisor: gone before the next run counts its sessions.
    on_exit(fn -> DynamicSupervisor.terminate_child(Switchboard.Session.Supervisor, floor) end)
    :ok = FloorSession.attach(floor, guild, passive: true)
    for _ <- 1..3, do: {:ok, _} = Switchboard.Guild.publish(guild, {"X", %{}}, essential: true)
    {:ok, _} = Switchboard.Guild.publish(guild, {"Y", %{}})

    assert %{frames: 3, lost: 0, duplicated: 0, streams: %{floor_check: {true, 3}}} =
             Switchboard.Session.stats(floor)

    codec = Switchboard.Codec.ETF
    prepared = codec.prepare("X", %{})
    # 6 skips 4 and 5; 2 again; a frame of another guild; anything else.
    send(floor, {:"$sb_event", :floor_check, 9, 6, "X", codec, prepared, 1, 0})
    send(floor, {:"$sb_event", :floor_check, 9, 2, "X", codec, prepared, 1, 0})
    send(floor, {:"$sb_event", :elsewhere, 1, 1, "X", codec, prepared, 1, 0})
    send(floor, :hello)
    assert %{frames: 4, lost: 2, duplicated: 1} = Switchboard.Session.stats(floor)
    assert Metrics.event_frames(metrics) == 4
  end

  @tag timeout: 120_000
  test "--nodes 1: a peer node shares the guilds and the sessions, and nothing is lost" do
    report =
      Sim.run(
        nodes: 1,
        guilds: 16,
        members: 320,
        sessions: 80,
        passive: 0.5,
        duration: 0.5,
        progress: false
      )

    assert report.nodes == 2
    assert report.guilds == 16
    assert report.sessions == 80
    assert report.verdict == "ok"
    assert %{lost: 0, duplicated: 0, out_of_order: 0} = report
    assert report.frames_delivered > 0
    # Both nodes own guilds (the ring spreads 16 guilds over 2 nodes with
    # 512 replicas each: all on one node has a chance of 2^-15, whatever
    # the peer's generated name) and both host sessions (round-robin).
    assert map_size(report.placement) == 2
    assert Enum.all?(Map.values(report.placement), &(&1.guilds > 0 and &1.sessions > 0))
    assert Report.json(report) =~ ~s("placement":{)
  end
end
