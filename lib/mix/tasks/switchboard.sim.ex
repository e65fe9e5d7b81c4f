defmodule Mix.Tasks.Switchboard.Sim do
  @shortdoc "Simulates guilds, members and sessions and reports throughput, latency and correctness"

  @moduledoc """
  Runs the Switchboard simulator (`Switchboard.Sim`) and prints its report.

      MIX_ENV=prod mix switchboard.sim [options]

  On its defaults (one guild of 100,000 members, 25,000 sessions of which
  90% passive, about 20 s of mixed traffic) it finishes in under a minute
  on two cores. `make demo` runs it.

  ## Options

    * `--mode native|pure` - every native module, or every pure twin (default native)
    * `--nodes N` - extra `:peer` nodes sharing guilds and sessions (default 0)
    * `--guilds N`, `--members N`, `--sessions N` - scale (1, 100000, 25000)
    * `--passive F` - fraction of passive sessions (0.9)
    * `--duration S` - seconds of traffic (20)
    * `--seed N` - random seed (1)
    * `--relay-threshold N` - sessions above which relays fan out (15000)
    * `--slow N` - sessions whose client stops reading (10)
    * `--window N` - event frames in flight at most (twice the session count)
    * `--floor S` - seconds of the send/2 floor measured after the run (2; 0: none)
    * `--receiver session|floor` - `Switchboard.Session`s (default), or the
      floor of a session's own work: the leanest process that does what a
      session does per frame (checks the guild's stream number, numbers
      and writes the frame, keeps its key for replay, counts it) and
      nothing else (`Switchboard.Sim.FloorSession`), fed by the same
      guilds, relays and driver: what the same run costs the VM
    * `--json PATH`, `--html PATH` - also write the report there
    * `--quiet` - no progress line
    * `--dashboard PORT` - serve the live metrics page at
      `http://127.0.0.1:PORT/dashboard` during the run
      (`Switchboard.Metrics.Prometheus`; `0` picks a free port): sessions,
      guilds, frames per second and publish-to-frame latency as the runtime
      reports them (see `Switchboard.RuntimeMetrics`)
    * `--transport memory|websocket` - sessions on in-memory transports
      (default), or real WebSocket clients through `Switchboard.Gateway`
      (see below)
    * `--compare` - run native then pure with the same options, one after
      the other in the same VM, and print both reports and their ratios
      (the JSON then holds `native`, `pure` and `ratios`)

  ## Over real WebSockets

  `--transport websocket` starts `Switchboard.Gateway` on a free loopback
  port with one demo guild and drives it through `--clients N` real Discord
  clients (npm's `ws` under Node, `test/js/sim_clients.js`, several Node
  processes each holding many connections), publishing MESSAGE_CREATE events
  for `--duration` seconds (`Switchboard.Sim.Websocket`). Options:

    * `--clients N` - WebSocket clients, all in the one guild (1000)
    * `--encoding json|etf` - the gateway encoding (json)
    * `--compress none|zlib-stream|zstd-stream` - transport compression (zstd-stream)
    * `--window N` - frames in flight at most, published but not yet
      received by a client (10 per client)
    * `--client-procs N` - Node processes (one per 250 clients, at most 4)
    * `--client-mode check|discard` - clients decode and check every frame
      (default), or only count frames after GUILD_CREATE (the server's cost
      per frame with clients that do almost nothing; no latency then)
    * `--server gateway|node` - the gateway (default), or the client-side
      floor: a Node `ws` server (`test/js/floor_server.js`) pushing
      pre-built frames (JSON + zstd-stream, built with the gateway's codec
      and compressor) to the same clients as fast as they take them, so the
      run measures what the clients alone cost (no latency then)
    * `--zstd-level N`, `--zstd-window-log N` - the gateway's zstd-stream
      parameters (Discord's: level 6, window log 18)

  Every client checks its session's sequence numbers and the published
  message indices, and measures publish-to-client latency against the
  publisher's wall clock (same machine). The report has the fields below
  (those that have no meaning over the gateway are `-`) plus `transport`,
  `clients`, `encoding`, `compress`, `clients_cpu_s` (CPU time of the Node
  processes), `server_cpu_us_per_frame` and `client_cpu_us_per_frame`,
  `wire_bytes_per_frame`, `seq_gaps` and `clients_closed`; `verdict` is
  `ok` only when no client lost, duplicated or reordered anything and every
  client received every message.

  ## Report

  `mode`, `receiver`, `nodes`, `guilds`, `members`, `sessions`, `duration_s` (first
  publish to last frame), `events_published`, `frames_delivered` (frames
  written by sessions: events and member-list updates), `frames_per_s`,
  `cpu_s` and `frames_per_cpu_s` (CPU time of every VM thread over the run:
  on a shared machine, frames per CPU-second times the cores is what an
  idle machine would reach),
  `latency_ms` (`p50`, `p99`, `p999` from publish to frame encoded at the
  session), `member_list_ops` (joins, leaves, presence changes) and
  `member_op_us` (time the guild spent on each, list ops and sends
  included; `member_list_us`: the member list's own share of it), `lost`, `duplicated`, `out_of_order` (checked at every session
  against the guild's streams), `slow_disconnects`,
  `memory_bytes_per_session` (resident memory growth over all nodes from
  before the sessions to the end of the run, per session) and
  `memory_bytes_per_member` (the guilds' member tables, processes and member
  lists, per member; `memory_rss_bytes_per_member` is the resident memory
  growth while the guilds were built), and `verdict` (`ok` only when nothing was lost,
  duplicated or reordered), and `floor`: frames per second that a bare
  `send/2` loop reaches on the same machine in the same run, delivering to
  as many receivers as there were sessions, that only count them, the
  run's share of events to all of them and the rest to as many as were
  active (what the fan-out costs with no guild, relay or session work). The JSON also holds the latency histogram and
  the throughput samples.
  """

  use Mix.Task

  @switches [
    mode: :string,
    nodes: :integer,
    guilds: :integer,
    members: :integer,
    sessions: :integer,
    passive: :float,
    duration: :float,
    seed: :integer,
    relay_threshold: :integer,
    slow: :integer,
    window: :integer,
    floor: :float,
    receiver: :string,
    json: :string,
    html: :string,
    quiet: :boolean,
    dashboard: :integer,
    compare: :boolean,
    transport: :string,
    clients: :integer,
    encoding: :string,
    compress: :string,
    client_procs: :integer,
    client_mode: :string,
    server: :string,
    zstd_level: :integer,
    zstd_window_log: :integer
  ]

  @websocket_only [
    :clients,
    :encoding,
    :compress,
    :client_procs,
    :client_mode,
    :server,
    :zstd_level,
    :zstd_window_log
  ]

  @impl true
  def run(args) do
    {opts, rest, invalid} = OptionParser.parse(args, strict: @switches)

    if rest != [] or invalid != [] do
      Mix.raise("unexpected arguments: #{inspect(rest ++ Enum.map(invalid, &elem(&1, 0)))}")
    end

    mode =
      case Keyword.get(opts, :mode, "native") do
        "native" -> :native
        "pure" -> :pure
        other -> Mix.raise("--mode must be native or pure, got: #{other}")
      end

    Mix.Task.run("app.start")
    if port = opts[:dashboard], do: start_dashboard(port)

    case Keyword.get(opts, :transport, "memory") do
      "memory" ->
        if bad = Enum.find(@websocket_only, &Keyword.has_key?(opts, &1)),
          do: Mix.raise("--#{dasherize(bad)} needs --transport websocket")

        memory(opts, mode)

      "websocket" ->
        websocket(opts, mode)

      other ->
        Mix.raise("--transport must be memory or websocket, got: #{other}")
    end
  end

  defp memory(opts, mode) do
    sim_opts =
      opts
      |> Keyword.drop([:json, :html, :quiet, :mode, :compare, :dashboard])
      |> Keyword.merge(
        mode: mode,
        receiver: choose(opts, :receiver, "session", session: :session, floor: :floor),
        progress: not Keyword.get(opts, :quiet, false)
      )

    if opts[:compare], do: compare(sim_opts, opts), else: single(sim_opts, opts)
  end

  defp start_dashboard(port) do
    {:ok, server} =
      Switchboard.Metrics.Prometheus.start_link(port: port, metrics: Switchboard.RuntimeMetrics)

    url = "http://127.0.0.1:#{Switchboard.Metrics.Prometheus.port(server)}/dashboard"
    Mix.shell().info("switchboard.sim: dashboard at #{url}")
  end

  @websocket_options [:clients, :duration, :window, :client_procs, :seed]

  defp websocket(opts, mode) do
    unsupported = [
      :compare,
      :nodes,
      :guilds,
      :members,
      :sessions,
      :passive,
      :slow,
      :floor,
      :receiver,
      :relay_threshold
    ]

    if bad = Enum.find(unsupported, &Keyword.has_key?(opts, &1)),
      do: Mix.raise("--#{dasherize(bad)} is not supported with --transport websocket")

    if mode != :native, do: Mix.raise("--transport websocket runs the native gateway only")

    sim_opts =
      opts
      |> Keyword.take(@websocket_options)
      |> Keyword.merge(
        encoding: choose(opts, :encoding, "json", json: :json, etf: :etf),
        compress:
          choose(opts, :compress, "zstd-stream",
            none: :none,
            "zlib-stream": :zlib_stream,
            "zstd-stream": :zstd_stream
          ),
        client_mode: choose(opts, :client_mode, "check", check: :check, discard: :discard),
        server: choose(opts, :server, "gateway", gateway: :gateway, node: :node),
        zstd:
          Enum.reject(
            [level: opts[:zstd_level], window_log: opts[:zstd_window_log]],
            &(elem(&1, 1) == nil)
          ),
        progress: not Keyword.get(opts, :quiet, false)
      )

    Mix.shell().info(
      "switchboard.sim: #{inspect([transport: :websocket] ++ Keyword.drop(sim_opts, [:progress]))}"
    )

    report = Switchboard.Sim.Websocket.run(sim_opts)
    output(report, opts)
  end

  defp choose(opts, key, default, choices) do
    value = Keyword.get(opts, key, default)

    case Enum.find(choices, fn {name, _} -> Atom.to_string(name) == value end) do
      {_, choice} ->
        choice

      nil ->
        names = Enum.map_join(choices, "|", fn {name, _} -> name end)
        Mix.raise("--#{dasherize(key)} must be #{names}, got: #{value}")
    end
  end

  defp dasherize(key), do: key |> Atom.to_string() |> String.replace("_", "-")

  defp single(sim_opts, opts) do
    Mix.shell().info("switchboard.sim: #{inspect(Keyword.drop(sim_opts, [:progress]))}")
    report = Switchboard.Sim.run(sim_opts)
    output(report, opts)
  end

  defp output(report, opts) do
    Mix.shell().info(Switchboard.Sim.Report.text(report))

    if path = opts[:json], do: File.write!(path, Switchboard.Sim.Report.json(report))
    if path = opts[:html], do: File.write!(path, Switchboard.Sim.Report.html(report))

    if report.verdict != "ok", do: Mix.raise("simulation verdict: #{report.verdict}")
  end

  defp compare(sim_opts, opts) do
    reports =
      for mode <- [:native, :pure], into: %{} do
        run_opts = Keyword.put(sim_opts, :mode, mode)
        Mix.shell().info("switchboard.sim: #{inspect(Keyword.drop(run_opts, [:progress]))}")
        report = Switchboard.Sim.run(run_opts)
        Mix.shell().info(Switchboard.Sim.Report.text(report))
        {mode, report}
      end

    ratios = Switchboard.Sim.Report.ratios(reports.native, reports.pure)
    Mix.shell().info("native / pure:\n" <> Switchboard.Sim.Report.text(ratios, Map.keys(ratios)))
    combined = %{native: reports.native, pure: reports.pure, ratios: ratios}
    if path = opts[:json], do: File.write!(path, Switchboard.Sim.Report.json(combined))
    if path = opts[:html], do: File.write!(path, Switchboard.Sim.Report.html(reports.native))

    for {mode, report} <- reports, report.verdict != "ok" do
      Mix.raise("simulation verdict (#{mode}): #{report.verdict}")
    end
  end
end
