defmodule Switchboard.Metrics.DashboardTest do
  # The dashboard reads the runtime's fixed metric names: the runtime sets
  # them, so no test that starts guilds or sessions runs beside this one.
  use ExUnit.Case, async: false

  alias Switchboard.{Guild, Metrics, RuntimeMetrics, Session}
  alias Switchboard.Metrics.Prometheus

  @moduletag timeout: 120_000

  @sessions "switchboard.sessions.connected"
  @guilds "switchboard.guilds"
  @frames "switchboard.frames.delivered"
  @latency "switchboard.publish_to_frame_us"
  @raw "switchboard.gateway.bytes_raw"
  @compressed "switchboard.gateway.bytes_compressed"

  # The runtime, small: sessions attached to a real guild come and go, the
  # guild publishes, sessions write frames (Switchboard.RuntimeMetrics
  # reports them, with their latency); only the gateway's compression is
  # stood in for. It pauses on request (replying once every frame published
  # so far is written and the gauges are set) so a page and a snapshot can
  # be compared.
  defp simulator(parent, guild, sessions) do
    receive do
      {:pause, from} ->
        Enum.each(sessions, &Session.stats/1)
        RuntimeMetrics.refresh()
        send(from, :paused)

        receive do
          :resume -> simulator(parent, guild, sessions)
        end
    after
      0 ->
        step = System.unique_integer([:positive, :monotonic])
        {:ok, session} = Session.start_link()
        :ok = Session.attach(session, guild)
        sessions = [session | sessions]

        sessions =
          if rem(step, 3) == 0 do
            [gone | rest] = Enum.reverse(sessions)
            GenServer.stop(gone)
            Enum.reverse(rest)
          else
            sessions
          end

        {:ok, _} = Guild.publish(guild, {"MESSAGE_CREATE", %{"step" => step}})
        raw = 2_000 + rem(step * 13, 700)
        Metrics.increment(@raw, raw)
        Metrics.increment(@compressed, div(raw, 4) + rem(step, 50))
        RuntimeMetrics.refresh()
        Process.sleep(2)
        simulator(parent, guild, sessions)
    end
  end

  defp pause(simulator) do
    send(simulator, {:pause, self()})
    assert_receive :paused, 5_000
  end

  # Loads the page in headless Chromium, lets its scripts run for `budget`
  # ms of virtual time, and returns %{id => data-value} of the rendered DOM.
  defp load_page(port, budget) do
    profile =
      Path.join(System.tmp_dir!(), "switchboard-chromium-#{System.unique_integer([:positive])}")

    {dom, 0} =
      System.cmd(
        "chromium",
        [
          "--headless",
          "--disable-gpu",
          "--no-sandbox",
          "--no-first-run",
          "--disable-extensions",
          "--disable-dev-shm-usage",
          "--user-data-dir=#{profile}",
          "--virtual-time-budget=#{budget}",
          "--dump-dom",
          "http://127.0.0.1:#{port}/dashboard"
        ],
        # Chromium logs to stderr (no D-Bus here); the DOM is told apart below.
        stderr_to_stdout: true
      )

    File.rm_rf(profile)

    for [_, id, value] <-
          Regex.scan(~r/id="([a-z0-9-]+)"[^>]*data-(?:value|polls)="([^"]*)"/, dom),
        into: %{},
        do: {id, value}
  end

  defp number(shown, id) do
    case Float.parse(Map.fetch!(shown, id)) do
      {value, ""} -> value
      _ -> flunk("#{id} shows no number: #{inspect(shown)}")
    end
  end

  defp assert_matches_snapshot(shown) do
    snapshot = Metrics.snapshot()
    latency = snapshot.histograms[{@latency, []}]
    raw = snapshot.counters[{@raw, []}]
    compressed = snapshot.counters[{@compressed, []}]
    assert number(shown, "sessions") == snapshot.gauges[{@sessions, []}]
    assert number(shown, "guilds") == snapshot.gauges[{@guilds, []}]
    assert number(shown, "frames") == snapshot.counters[{@frames, []}]
    assert number(shown, "latency-count") == latency.count

    for q <- [:p50, :p90, :p99, :p999] do
      assert number(shown, "latency-#{q}") == Map.fetch!(latency, q)
    end

    assert number(shown, "bytes-raw") == raw
    assert number(shown, "bytes-compressed") == compressed
    assert_in_delta number(shown, "compression"), raw / compressed, 1.0e-9
  end

  test "the page shows live numbers that change and match snapshot()" do
    server = start_supervised!({Prometheus, port: 0})
    port = Prometheus.port(server)
    parent = self()
    {:ok, guild} = Guild.start_link(id: {:dashboard, System.unique_integer([:positive])})
    simulator = spawn_link(fn -> simulator(parent, guild, []) end)
    Process.sleep(50)

    # While the simulator runs: frames are flowing. (Six polls due: virtual time
    # runs them a few real ms apart, the rate spans the last five.)
    running = load_page(port, 5_500)
    assert number(running, "status") >= 4
    assert number(running, "fps") > 0

    # Paused: every number on the page is the snapshot's.
    pause(simulator)
    first = load_page(port, 1_500)
    assert_matches_snapshot(first)

    # The simulator moves on; the page follows.
    send(simulator, :resume)
    Process.sleep(100)
    pause(simulator)
    second = load_page(port, 1_500)
    assert_matches_snapshot(second)

    for id <- ["frames", "latency-count", "bytes-raw", "sessions"] do
      assert number(second, id) != number(first, id), "#{id} did not change"
    end

    assert number(second, "frames") > number(first, "frames")
  end
end
