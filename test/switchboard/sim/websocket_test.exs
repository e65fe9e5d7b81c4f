defmodule Switchboard.Sim.WebsocketTest do
  # The simulator over real WebSocket clients (npm's ws under Node,
  # test/js/sim_clients.js), small: tens of clients, a few seconds.
  use ExUnit.Case, async: false

  alias Switchboard.Sim.{Report, Websocket}

  @tag timeout: 120_000
  test "50 clients over JSON and zstd-stream each receive every message, in order" do
    report = Websocket.run(clients: 50, duration: 3.0, progress: false)

    assert %{transport: "websocket", encoding: "json", compress: "zstd-stream"} = report
    assert report.verdict == "ok"
    assert %{lost: 0, duplicated: 0, out_of_order: 0, seq_gaps: 0, clients_closed: 0} = report
    assert report.events_published > 0
    # Every client counted every published message as received, in order.
    assert report.clients_complete == 50
    assert report.frames_delivered == 50 * report.events_published
    assert report.frames_per_s > 0
    assert is_float(report.latency_ms.p99)

    assert Enum.sum(Enum.map(report.latency_histogram_us, &elem(&1, 1))) ==
             report.frames_delivered

    text = Report.text(report)
    assert text =~ "transport"
    assert text =~ "client_cpu_us_per_frame"
    assert Report.json(report) =~ ~s("verdict":"ok")
    assert Report.html(report) =~ "<svg"
  end

  @tag timeout: 120_000
  test "ETF over zlib-stream, and uncompressed JSON, check out too" do
    for {encoding, compress} <- [etf: :zlib_stream, json: :none] do
      report =
        Websocket.run(
          clients: 20,
          duration: 1.0,
          encoding: encoding,
          compress: compress,
          client_procs: 2,
          progress: false
        )

      assert report.encoding == Atom.to_string(encoding)
      assert report.client_processes == 2
      assert report.verdict == "ok", inspect(Map.drop(report, [:latency_histogram_us]))
      assert report.clients_complete == 20
      assert report.frames_delivered == 20 * report.events_published
    end
  end

  test "clients that only count frames still see every one" do
    report = Websocket.run(clients: 10, duration: 0.5, client_mode: :discard, progress: false)

    assert report.verdict == "ok"
    assert report.latency_ms == nil
    assert report.frames_delivered == 10 * report.events_published
  end

  test "the Node floor server's pre-built frames reach every client, in order" do
    report = Websocket.run(clients: 10, duration: 0.5, server: :node, progress: false)

    assert report.server == "node"
    assert report.verdict == "ok"
    assert report.events_published > 0
    assert report.frames_delivered == 10 * report.events_published
    assert report.clients_complete == 10
    assert report.latency_ms == nil
    assert Report.html(report) =~ "No frames."
  end

  test "mix switchboard.sim refuses websocket options without --transport websocket, and the reverse" do
    Mix.shell(Mix.Shell.Process)
    on_exit(fn -> Mix.shell(Mix.Shell.IO) end)

    for {args, message} <- [
          {["--clients", "5"], "--clients needs --transport websocket"},
          {["--transport", "websocket", "--sessions", "5"],
           "--sessions is not supported with --transport websocket"},
          {["--transport", "websocket", "--compress", "gzip"],
           "--compress must be none|zlib-stream|zstd-stream, got: gzip"},
          {["--transport", "udp"], "--transport must be memory or websocket, got: udp"},
          {["--receiver", "sink"], "--receiver must be session|floor, got: sink"},
          {["--transport", "websocket", "--receiver", "floor"],
           "--receiver is not supported with --transport websocket"}
        ] do
      assert_raise Mix.Error, message, fn -> Mix.Tasks.Switchboard.Sim.run(args) end
    end
  end

  @tag timeout: 120_000
  test "mix switchboard.sim --transport websocket prints the report and writes --json and --html" do
    Mix.shell(Mix.Shell.Process)
    on_exit(fn -> Mix.shell(Mix.Shell.IO) end)
    dir = Path.join(System.tmp_dir!(), "switchboard_sim_ws_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)

    Mix.Tasks.Switchboard.Sim.run(
      ~w(--transport websocket --clients 8 --duration 0.5 --encoding etf --quiet) ++
        ["--json", Path.join(dir, "r.json"), "--html", Path.join(dir, "r.html")]
    )

    assert_received {:mix_shell, :info, ["switchboard.sim: " <> _]}
    assert_received {:mix_shell, :info, [text]}
    assert text =~ ~r/verdict\s+ok/
    assert text =~ ~r/encoding\s+etf/

    json = Switchboard.Json.decode!(File.read!(Path.join(dir, "r.json")))
    assert %{"transport" => "websocket", "clients" => 8, "verdict" => "ok"} = json
    assert File.read!(Path.join(dir, "r.html")) =~ "<svg"
  end
end
