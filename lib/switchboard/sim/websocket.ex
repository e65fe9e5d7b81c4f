defmodule Switchboard.Sim.Websocket do
  @moduledoc """
  The simulator over real WebSockets (`mix switchboard.sim --transport
  websocket`): the same runtime driven through `Switchboard.Gateway` and
  `:clients` real Discord clients (npm's `ws` under Node,
  `test/js/sim_clients.js`), several Node processes each holding many
  connections.

  `run/1` starts a gateway on a free loopback port with one demo guild,
  launches the Node processes, waits until every client has IDENTIFYed and
  received its GUILD_CREATE, then for `:duration` seconds publishes
  MESSAGE_CREATE events to the guild through `Switchboard.Gateway.publish/4`,
  keeping at most `:window` frames in flight (published, not yet received by
  a client: the clients report what they received every 20 ms). Each
  message carries `"nonce": "<index>:<publish µs>"`; every client checks its
  session's sequence numbers and the message indices (lost, duplicated, out
  of order) and measures publish-to-client latency against the same wall
  clock. The clients report counts, a latency histogram and their CPU time.

  `zstd:` takes `Switchboard.Zstd.compress_stream/1` options for the
  gateway's zstd-stream (Discord's parameters by default).

  `client_mode: :discard` makes the clients count frames only after
  GUILD_CREATE (no decompression, no decoding): what the server side costs
  per frame with clients that do almost nothing.
  """

  alias Switchboard.Gateway
  alias Switchboard.Codec.JSON
  alias Switchboard.Gateway.Compressor.Zstd, as: ZstdCompressor
  alias Switchboard.Session.Metrics

  @script Path.expand("../../../test/js/sim_clients.js", __DIR__)
  @floor_server Path.expand("../../../test/js/floor_server.js", __DIR__)
  @token "switchboard-sim"
  @gateway :switchboard_sim_gateway

  @defaults [
    clients: 1_000,
    encoding: :json,
    compress: :zstd_stream,
    duration: 20.0,
    window: nil,
    client_procs: nil,
    client_mode: :check,
    server: :gateway,
    floor_messages: 3_000,
    zstd: [],
    progress: true,
    seed: 1
  ]

  @contents for n <- 1..64, do: String.duplicate("lorem ipsum ", rem(n * 7, 25) + 2)

  @doc "The options `run/1` takes, with their defaults."
  def defaults, do: @defaults

  @doc "The path of the Node client script."
  def script, do: @script

  @doc "Runs one simulation over WebSockets and returns its report."
  @spec run(keyword()) :: map()
  def run(opts \\ []) do
    opts = Keyword.merge(@defaults, opts)
    node = System.find_executable("node") || raise "node not found (scripts/setup.sh installs it)"

    unless File.exists?(Path.join(Path.dirname(@script), "node_modules/ws")),
      do: raise("npm packages missing in #{Path.dirname(@script)}: run scripts/setup.sh")

    clients = opts[:clients]
    procs = opts[:client_procs] || min(max(div(clients + 249, 250), 1), 4)
    phase = System.monotonic_time(:millisecond)
    server = start_server(opts, node)

    try do
      ports =
        for share <- split(clients, procs), share > 0 do
          mode = Atom.to_string(opts[:client_mode])

          Port.open({:spawn_executable, node}, [
            :binary,
            :exit_status,
            {:line, 1_000_000},
            args: [@script, server.url, @token, Integer.to_string(share), mode]
          ])
        end

      try do
        await_ready(Map.new(ports, &{&1, false}), phase + 120_000)

        Switchboard.Sim.progress(
          opts,
          "#{clients} clients identified (#{length(ports)} Node processes)",
          phase
        )

        simulate(opts, ports, server)
      after
        Enum.each(ports, &close_port/1)
      end
    after
      stop_server(server)
    end
  end

  # The gateway, or (`server: :node`) the Node floor server pushing
  # pre-built frames (test/js/floor_server.js).
  defp start_server(opts, node) do
    case opts[:server] do
      :gateway ->
        {:ok, sup} =
          Gateway.start_link(
            name: @gateway,
            port: 0,
            tokens: [@token],
            guilds: 1,
            members: 10,
            heartbeat_interval: 60_000,
            max_connections: opts[:clients] + 100,
            zstd: opts[:zstd]
          )

        Process.unlink(sup)
        guild_id = hd(Gateway.config(@gateway).guild_ids)
        %{kind: :gateway, sup: sup, guild_id: guild_id, url: Gateway.url(@gateway) <> query(opts)}

      :node ->
        if opts[:encoding] != :json or opts[:compress] != :zstd_stream,
          do: raise(ArgumentError, "server: :node pushes JSON over zstd-stream only")

        file =
          Path.join(
            System.tmp_dir!(),
            "switchboard_sim_frames_#{System.unique_integer([:positive])}"
          )

        File.write!(file, prebuilt_frames(opts[:floor_messages], opts[:zstd]))
        window = opts[:window] || 10 * opts[:clients]
        in_flight = max(div(window, opts[:clients]), 1)

        port =
          Port.open({:spawn_executable, node}, [
            :binary,
            :exit_status,
            {:line, 1_000_000},
            args: [
              @floor_server,
              file,
              Integer.to_string(opts[:clients]),
              Integer.to_string(round(opts[:duration] * 1000)),
              Integer.to_string(in_flight)
            ]
          ])

        listening =
          receive do
            {^port, {:data, {:eol, "PORT " <> number}}} -> number
            {^port, {:exit_status, status}} -> raise "floor server exited: #{status}"
          after
            30_000 -> raise "floor server did not start"
          end

        url = "ws://127.0.0.1:#{listening}" <> query(opts)
        %{kind: :node, port: port, file: file, url: url, guild_id: nil}
    end
  end

  defp stop_server(%{kind: :gateway, sup: sup}), do: Supervisor.stop(sup)

  defp stop_server(%{kind: :node, port: port, file: file}) do
    close_port(port)
    File.rm(file)
  end

  @doc false
  # HELLO, READY, GUILD_CREATE and `count` messages as the gateway would
  # write them to one JSON + zstd-stream connection (its codec, its
  # compressor), each a 4-byte length and its bytes.
  def prebuilt_frames(count, zstd \\ []) do
    stream = ZstdCompressor.new(zstd)

    hello =
      Switchboard.Json.encode!(%{
        "op" => 10,
        "s" => nil,
        "t" => nil,
        "d" => %{"heartbeat_interval" => 60_000}
      })

    ready = JSON.frame(JSON.prepare("READY", %{"v" => 10, "session_id" => "floor"}), 1)
    guild = JSON.frame(JSON.prepare("GUILD_CREATE", %{"id" => "1"}), 2)

    messages =
      for n <- 0..(count - 1),
          do: JSON.frame(JSON.prepare("MESSAGE_CREATE", message(n, "1", 0)), n + 3)

    for payload <- [hello, ready, guild | messages] do
      compressed = IO.iodata_to_binary(ZstdCompressor.compress(stream, payload))
      [<<byte_size(compressed)::32>>, compressed]
    end
  end

  # Closing stdin ends a Node process; a port already closed is fine.
  defp close_port(port) do
    if Port.info(port), do: Port.close(port)
  catch
    :error, _ -> :ok
  end

  defp query(opts) do
    compress =
      case opts[:compress] do
        :none -> ""
        :zlib_stream -> "&compress=zlib-stream"
        :zstd_stream -> "&compress=zstd-stream"
      end

    "/?v=10&encoding=#{opts[:encoding]}" <> compress
  end

  defp split(total, parts),
    do:
      for(i <- 0..(parts - 1), do: div(total, parts) + if(i < rem(total, parts), do: 1, else: 0))

  # Only messages from this run's ports are taken (a Node process of an
  # earlier run may still report its exit).
  defp await_ready(ports, deadline) do
    if Enum.all?(ports, fn {_, ready} -> ready end) do
      :ok
    else
      timeout = max(deadline - System.monotonic_time(:millisecond), 0)

      receive do
        {port, {:data, {:eol, "READY " <> _}}} when is_map_key(ports, port) ->
          await_ready(%{ports | port => true}, deadline)

        {port, {:data, {:eol, "P " <> _}}} when is_map_key(ports, port) ->
          await_ready(ports, deadline)

        {port, {:exit_status, status}} when is_map_key(ports, port) ->
          raise "Node client #{inspect(port)} exited: #{status}"
      after
        timeout ->
          ready = Enum.count(ports, &elem(&1, 1))
          raise "clients not ready after 120 s (#{ready} of #{map_size(ports)} Node processes)"
      end
    end
  end

  # ---------------------------------------------------------------------------

  defp simulate(opts, ports, server) do
    clients = opts[:clients]
    window = opts[:window] || clients * 10
    :rand.seed(:exsss, {opts[:seed], 3, 5})
    Enum.each(ports, &Port.command(&1, "START\n"))
    cpu_before = cpu_ms()
    started = System.monotonic_time(:millisecond)
    deadline = started + round(opts[:duration] * 1000)

    state = %{
      server: server,
      guild_id: server.guild_id,
      clients: clients,
      window: window,
      deadline: deadline,
      started: started,
      progress: opts[:progress],
      next_progress: started + 1000,
      received: Map.new(ports, &{&1, 0}),
      published: 0,
      samples: [],
      last_sample: {started, 0}
    }

    state =
      case server.kind do
        :gateway ->
          publish_loop(state)

        :node ->
          Port.command(server.port, "GO\n")
          floor_loop(state)
      end

    Enum.each(ports, &Port.command(&1, "END #{state.published}\n"))
    {results, state} = collect(ports, %{}, state)

    cpu_s =
      if server.kind == :node,
        do: state.server_cpu_us / 1_000_000,
        else: (cpu_ms() - cpu_before) / 1000

    if state.progress, do: IO.write(:stderr, "\n")
    report(opts, state, Map.values(results), cpu_s, window)
  end

  defp publish_loop(state) do
    state = drain_reports(state, 0)
    now = System.monotonic_time(:millisecond)
    state = maybe_progress(state, now)

    cond do
      now >= state.deadline ->
        state

      state.published * state.clients - received(state) > state.window ->
        state |> drain_reports(5) |> publish_loop()

      true ->
        publish(state)
        publish_loop(%{state | published: state.published + 1})
    end
  end

  # The Node floor server pushes on its own; this takes the clients'
  # reports until it says how many messages each connection got.
  defp floor_loop(state) do
    receive do
      {port, {:data, {:eol, "SENT " <> counts}}} when port == state.server.port ->
        [sent, cpu_us] = String.split(counts)

        %{state | published: String.to_integer(sent)}
        |> Map.put(:server_cpu_us, String.to_integer(cpu_us))
    after
      0 ->
        state = drain_reports(state, 5)
        floor_loop(maybe_progress(state, System.monotonic_time(:millisecond)))
    end
  end

  defp publish(state) do
    n = state.published
    data = message(n, state.guild_id, System.os_time(:microsecond))
    :ok = Gateway.publish(@gateway, state.guild_id, "MESSAGE_CREATE", data)
  end

  @doc false
  # The n-th published MESSAGE_CREATE's data, its nonce "<n>:<published_us>".
  def message(n, guild_id, published_us) do
    author = rem(n * 7919, 500)
    user_id = Integer.to_string(1_180_000_000_000_000_000 + author * 4_194_304)

    %{
      "type" => 0,
      "tts" => false,
      "timestamp" =>
        "2026-12-06T00:#{pad(rem(n, 60))}:#{pad(rem(n * 7, 60))}.#{100_000 + rem(n, 900_000)}+00:00",
      "pinned" => false,
      "mentions" => [],
      "mention_roles" => [],
      "mention_everyone" => false,
      "member" => %{
        "roles" => [],
        "nick" => nil,
        "joined_at" => "2024-03-01T12:00:00.000000+00:00"
      },
      "id" => Integer.to_string(1_313_000_000_000_000_000 + n * 4_194_304),
      "flags" => 0,
      "embeds" => [],
      "edited_timestamp" => nil,
      "content" => Enum.at(@contents, rem(n, 64)) <> Integer.to_string(n * 7919),
      "components" => [],
      "channel_id" => "1000",
      "guild_id" => guild_id,
      "author" => %{
        "username" => "user_#{author}",
        "public_flags" => 0,
        "id" => user_id,
        "global_name" => "User #{author}",
        "discriminator" => "0",
        "avatar" => nil
      },
      "attachments" => [],
      "nonce" => "#{n}:#{published_us}"
    }
  end

  defp pad(number), do: String.pad_leading(Integer.to_string(number), 2, "0")

  defp received(state), do: state.received |> Map.values() |> Enum.sum()

  # Takes every progress line waiting; waits up to `timeout` ms for the first.
  defp drain_reports(state, timeout) do
    receive do
      {port, {:data, {:eol, "P " <> count}}} when is_map_key(state.received, port) ->
        state = put_in(state.received[port], String.to_integer(count))
        drain_reports(state, 0)

      {port, {:exit_status, status}} when is_map_key(state.received, port) ->
        raise "Node client #{inspect(port)} exited: #{status}"
    after
      timeout -> state
    end
  end

  defp maybe_progress(state, now) when now < state.next_progress, do: state

  defp maybe_progress(state, now) do
    frames = received(state)
    {t0, f0} = state.last_sample
    rate = (frames - f0) * 1000 / max(now - t0, 1)

    if state.progress do
      IO.write(
        :stderr,
        "\r  #{Float.round((now - state.started) / 1000, 1)} s  messages #{state.published}  " <>
          "frames #{frames}  #{round(rate)} frames/s   "
      )
    end

    sample = %{t_ms: now - state.started, frames: frames}

    %{
      state
      | next_progress: now + 1000,
        last_sample: {now, frames},
        samples: [sample | state.samples]
    }
  end

  defp collect(ports, results, state) do
    if map_size(results) == length(ports) do
      {results, state}
    else
      receive do
        {port, {:data, {:eol, "P " <> count}}} when is_map_key(state.received, port) ->
          collect(ports, results, put_in(state.received[port], String.to_integer(count)))

        {port, {:data, {:eol, "{" <> _ = line}}} when is_map_key(state.received, port) ->
          collect(ports, Map.put(results, port, Switchboard.Json.decode!(line)), state)

        # A client process exits once it has reported.
        {port, {:exit_status, status}}
        when is_map_key(state.received, port) and (not is_map_key(results, port) or status != 0) ->
          raise "Node client #{inspect(port)} exited: #{status}"
      after
        30_000 -> raise "Node clients did not report within 30 s of the end"
      end
    end
  end

  defp report(opts, state, results, cpu_s, window) do
    sum = fn key -> Enum.reduce(results, 0, &(&2 + &1[key])) end
    frames = sum.("frames")
    firsts = for r <- results, r["first_us"], do: r["first_us"]
    lasts = for r <- results, r["last_us"], do: r["last_us"]

    elapsed_s = if firsts == [], do: 0.0, else: (Enum.max(lasts) - Enum.min(firsts)) / 1_000_000

    histogram =
      results
      |> Enum.flat_map(&Map.to_list(&1["histogram"]))
      |> Enum.reduce(%{}, fn {index, count}, acc ->
        Map.update(acc, Metrics.upper_bound(String.to_integer(index)), count, &(&1 + count))
      end)
      |> Enum.sort()

    lost = sum.("lost")
    duplicated = sum.("duplicated")
    out_of_order = sum.("out_of_order")
    seq_gaps = sum.("seq_gaps")
    closed = sum.("closed")
    clients_cpu_s = sum.("cpu_us") / 1_000_000
    # Latency means nothing for pre-built frames (their nonces are not fresh).
    checked = opts[:client_mode] == :check and opts[:server] == :gateway

    ok =
      lost == 0 and duplicated == 0 and out_of_order == 0 and seq_gaps == 0 and closed == 0 and
        sum.("complete") == state.clients

    %{
      mode: "native",
      transport: "websocket",
      server: Atom.to_string(opts[:server]),
      clients: state.clients,
      client_processes: length(results),
      client_mode: Atom.to_string(opts[:client_mode]),
      encoding: Atom.to_string(opts[:encoding]),
      compress: opts[:compress] |> Atom.to_string() |> String.replace("_", "-"),
      nodes: 1,
      guilds: 1,
      members: 10,
      sessions: state.clients,
      relays: nil,
      duration_s: Float.round(elapsed_s, 2),
      events_published: state.published,
      frames_delivered: frames,
      frames_per_s: round(frames / max(elapsed_s, 0.001)),
      cpu_s: Float.round(cpu_s, 2),
      frames_per_cpu_s: round(frames / max(cpu_s, 0.001)),
      clients_cpu_s: Float.round(clients_cpu_s, 2),
      server_cpu_us_per_frame: Float.round(cpu_s * 1_000_000 / max(frames, 1), 2),
      client_cpu_us_per_frame: Float.round(clients_cpu_s * 1_000_000 / max(frames, 1), 2),
      wire_bytes_per_frame: div(sum.("wire_bytes"), max(frames, 1)),
      latency_ms:
        if checked do
          %{
            p50: ms(Metrics.percentile(histogram, 0.5)),
            p99: ms(Metrics.percentile(histogram, 0.99)),
            p999: ms(Metrics.percentile(histogram, 0.999))
          }
        end,
      member_list_ops: 0,
      member_op_us: nil,
      member_list_us: nil,
      lost: lost,
      duplicated: duplicated,
      out_of_order: out_of_order,
      seq_gaps: seq_gaps,
      clients_closed: closed,
      clients_complete: sum.("complete"),
      slow_disconnects: closed,
      memory_bytes_per_session: nil,
      memory_bytes_per_member: nil,
      window_frames: window,
      verdict: if(ok, do: "ok", else: "failed"),
      floor: nil,
      latency_histogram_us: if(checked, do: histogram, else: []),
      throughput: Enum.reverse(state.samples)
    }
  end

  defp ms(nil), do: nil
  defp ms(us), do: Float.round(us / 1000, 3)

  defp cpu_ms do
    {total, _} = :erlang.statistics(:runtime)
    total
  end
end
