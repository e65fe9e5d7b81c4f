defmodule Switchboard.Metrics.Prometheus do
  @moduledoc """
  Serves metrics over HTTP on a loopback port: Prometheus text exposition
  at `GET /metrics`, the live operator page at `GET /dashboard`, and the
  JSON it polls at `GET /metrics.json`.

      children = [{Switchboard.Metrics.Prometheus, port: 9568}]

  or `config :switchboard, metrics_reporters: [{Switchboard.Metrics.Prometheus, port: 9568}]`
  to have the application start it.

  ## `/metrics`

  Prometheus text format 0.0.4. Names become `[a-zA-Z0-9_:]` (any other
  character is `_`), tags become labels, each family has `# HELP` and
  `# TYPE` lines:

    * a counter `name` is `name_total` (type `counter`);
    * a gauge is `name` (type `gauge`);
    * a histogram is `name_bucket{le="..."}` for each bound in `:buckets`
      (cumulative; `le="+Inf"` equals `name_count`), `name_sum` and
      `name_count` (type `histogram`). Below 256 the bucket counts are exact;
      above, a value within 1/128 over a bound may be counted under it (the
      log-linear buckets of `Switchboard.Metrics`).

  ## `/dashboard`

  One self-contained page (inline CSS, JavaScript and SVG; no CDN, no build
  step) that polls `/metrics.json` every second and shows connected
  sessions, guilds, frames per second, publish-to-frame latency quantiles
  and the compression ratio, each with a chart of the last five minutes. It
  reads the metric names listed in `Switchboard.Metrics`: counters and gauges
  summed over their tag sets, the untagged latency histogram (else the
  first). Frames per second use the server's clock (`at` in the JSON), over
  the last five poll intervals; latency quantiles and the compression ratio are
  over everything recorded since the node started (histograms and counters
  are cumulative), charted as they move.

  ## `/metrics.json`

  `{"node": ..., "at": monotonic ms, "counters": [{"name", "tags", "value"}],
  "gauges": [...], "histograms": [{"name", "tags", "count", "min", "max",
  "mean", "p50", "p90", "p99", "p999"}]}`, with tags as an object.

  ## Options

    * `:port` - the TCP port (default `9568`; `0` picks a free one, see `port/1`)
    * `:ip` - the address to listen on (default `{127, 0, 0, 1}`, loopback)
    * `:buckets` - histogram bucket bounds (default: 1-2-5 steps from 1 to
      10_000_000, for microseconds)
    * `:metrics` - the metrics module to read (default `Switchboard.Metrics`)
    * `:name` - the server's registered name (default none)

  A request head is read up to 8 KiB and 64 header lines, within 5
  seconds, and parsed with the VM's HTTP packet decoder; every response
  closes the connection.
  """
  use GenServer

  @default_buckets for exponent <- 0..6, step <- [1, 2, 5], do: step * Integer.pow(10, exponent)
  @default_buckets @default_buckets ++ [10_000_000]
  @dashboard_path Path.join(__DIR__, "dashboard.html")
  @external_resource @dashboard_path
  @dashboard File.read!(@dashboard_path)
  @request_timeout 5_000
  @max_headers 64
  @max_head 8192

  @doc "Starts the server (see the module doc for `opts`)."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []) do
    {name, opts} = Keyword.pop(opts, :name)
    GenServer.start_link(__MODULE__, opts, if(name, do: [name: name], else: []))
  end

  @doc "The TCP port the server listens on."
  @spec port(GenServer.server()) :: :inet.port_number()
  def port(server), do: GenServer.call(server, :port)

  @doc "The dashboard page (HTML)."
  @spec dashboard() :: String.t()
  def dashboard, do: @dashboard

  @impl true
  def init(opts) do
    port = Keyword.get(opts, :port, 9568)
    ip = Keyword.get(opts, :ip, {127, 0, 0, 1})
    buckets = Keyword.get(opts, :buckets, @default_buckets)

    unless is_integer(port) and port in 0..65_535,
      do: raise(ArgumentError, "expected :port to be a TCP port, got: #{inspect(port)}")

    unless is_list(buckets) and buckets != [] and
             Enum.all?(buckets, &(is_integer(&1) and &1 >= 0)),
           do:
             raise(
               ArgumentError,
               "expected :buckets to be non-negative integers, got: #{inspect(buckets)}"
             )

    config = %{
      metrics: Keyword.get(opts, :metrics, Switchboard.Metrics),
      buckets: Enum.sort(Enum.uniq(buckets))
    }

    {:ok, listener} =
      :gen_tcp.listen(port, [:binary, ip: ip, active: false, reuseaddr: true, backlog: 128])

    {:ok, actual_port} = :inet.port(listener)
    acceptor = spawn_link(fn -> accept_loop(listener, config) end)
    :ok = :gen_tcp.controlling_process(listener, acceptor)
    {:ok, %{listener: listener, port: actual_port, acceptor: acceptor}}
  end

  @impl true
  def handle_call(:port, _from, state), do: {:reply, state.port, state}

  defp accept_loop(listener, config) do
    case :gen_tcp.accept(listener) do
      {:ok, socket} ->
        handler = spawn(fn -> receive(do: (:go -> serve(socket, config))) end)
        :ok = :gen_tcp.controlling_process(socket, handler)
        send(handler, :go)
        accept_loop(listener, config)

      {:error, :closed} ->
        :ok

      {:error, _transient} ->
        accept_loop(listener, config)
    end
  end

  defp serve(socket, config) do
    deadline = System.monotonic_time(:millisecond) + @request_timeout

    response =
      case read_head(socket, deadline, "") do
        {:ok, head} ->
          case parse_request(head) do
            {:ok, method, path} -> respond(method, path, config)
            :error -> reply(400, "text/plain", "bad request\n")
          end

        {:error, :too_large} ->
          reply(400, "text/plain", "bad request\n")

        {:error, _closed_or_timeout} ->
          nil
      end

    if response, do: :gen_tcp.send(socket, response)
    close(socket)
  end

  # Closing with unread request bytes would reset the connection and could
  # discard the response before the client reads it: stop writing, then
  # read what is left (at most 1 MiB, for at most 1 s) before closing.
  defp close(socket) do
    :gen_tcp.shutdown(socket, :write)
    drain(socket, System.monotonic_time(:millisecond) + 1_000, 1_048_576)
    :gen_tcp.close(socket)
  end

  defp drain(socket, deadline, budget) when budget > 0 do
    case :gen_tcp.recv(socket, 0, max(deadline - System.monotonic_time(:millisecond), 0)) do
      {:ok, data} -> drain(socket, deadline, budget - byte_size(data))
      {:error, _closed_or_timeout} -> :ok
    end
  end

  defp drain(_socket, _deadline, _budget), do: :ok

  # The request head: bytes up to the blank line, at most @max_head bytes.
  defp read_head(socket, deadline, acc) do
    case :binary.match(acc, "\r\n\r\n") do
      {at, _} ->
        {:ok, binary_part(acc, 0, at + 4)}

      :nomatch when byte_size(acc) > @max_head ->
        {:error, :too_large}

      :nomatch ->
        case :gen_tcp.recv(socket, 0, max(deadline - System.monotonic_time(:millisecond), 0)) do
          {:ok, data} -> read_head(socket, deadline, acc <> data)
          {:error, reason} -> {:error, reason}
        end
    end
  end

  # Parsed with the VM's own HTTP packet decoder.
  defp parse_request(head) do
    case :erlang.decode_packet(:http_bin, head, []) do
      {:ok, {:http_request, method, {:abs_path, target}, _version}, rest} ->
        if headers_end?(rest, 0) do
          [path | _query] = String.split(target, "?", parts: 2)
          {:ok, method, path}
        else
          :error
        end

      _ ->
        :error
    end
  end

  defp headers_end?(_rest, @max_headers), do: false

  defp headers_end?(rest, count) do
    case :erlang.decode_packet(:httph_bin, rest, []) do
      {:ok, :http_eoh, _} -> true
      {:ok, {:http_header, _, _, _, _}, rest} -> headers_end?(rest, count + 1)
      _ -> false
    end
  end

  defp respond(method, path, config) when method in [:GET, :HEAD] do
    {status, type, body} =
      case path do
        "/metrics" ->
          {200, "text/plain; version=0.0.4; charset=utf-8",
           exposition(config.metrics.snapshot(buckets: config.buckets))}

        "/metrics.json" ->
          {200, "application/json", json(config.metrics.snapshot())}

        "/dashboard" ->
          {200, "text/html; charset=utf-8", @dashboard}

        _ ->
          {404, "text/plain", "not found\n"}
      end

    reply(status, type, if(method == :HEAD, do: {:head, body}, else: body))
  end

  defp respond(_method, _path, _config), do: reply(405, "text/plain", "method not allowed\n")

  defp reply(status, type, {:head, body}), do: head(status, type, IO.iodata_length(body))

  defp reply(status, type, body), do: [head(status, type, IO.iodata_length(body)), body]

  defp head(status, type, length) do
    reason = %{200 => "OK", 400 => "Bad Request", 404 => "Not Found", 405 => "Method Not Allowed"}

    [
      "HTTP/1.1 #{status} #{reason[status]}\r\n",
      "content-type: #{type}\r\ncontent-length: #{length}\r\n",
      "cache-control: no-store\r\nconnection: close\r\n\r\n"
    ]
  end

  ## Prometheus text exposition

  @doc false
  # The exposition of `snapshot` (taken with `buckets:`), as iodata.
  def exposition(snapshot) do
    counters = families(snapshot.counters, "_total")
    gauges = families(snapshot.gauges, "")
    histograms = families(snapshot.histograms, "")

    [
      for {family, series} <- counters do
        [
          help_type(family, "counter"),
          for({tags, value} <- series, do: sample(family, tags, value))
        ]
      end,
      for {family, series} <- gauges do
        [
          help_type(family, "gauge"),
          for({tags, value} <- series, do: sample(family, tags, value))
        ]
      end,
      for {family, series} <- histograms do
        [
          help_type(family, "histogram"),
          for({tags, summary} <- series, do: histogram(family, tags, summary))
        ]
      end
    ]
  end

  # %{{name, tags} => value} -> [{family, [{tags, value}]}], sorted.
  defp families(metrics, suffix) do
    metrics
    |> Enum.group_by(fn {{name, _tags}, _} -> metric_name(name) <> suffix end, fn {{_, tags},
                                                                                   value} ->
      {tags, value}
    end)
    |> Enum.sort()
    |> Enum.map(fn {family, series} -> {family, Enum.sort(series)} end)
  end

  defp help_type(family, type) do
    ["# HELP ", family, " Switchboard ", type, " ", family, ".\n# TYPE ", family, " ", type, "\n"]
  end

  defp histogram(family, tags, summary) do
    buckets =
      for {bound, count} <- summary.buckets do
        sample(family <> "_bucket", tags ++ [le: Integer.to_string(bound)], count)
      end

    [
      buckets,
      sample(family <> "_bucket", tags ++ [le: "+Inf"], summary.count),
      sample(family <> "_sum", tags, summary.sum),
      sample(family <> "_count", tags, summary.count)
    ]
  end

  defp sample(name, [], value), do: [name, " ", number(value), "\n"]

  defp sample(name, tags, value) do
    labels =
      Enum.map_join(tags, ",", fn {k, v} -> [label_name(k), "=\"", escape(to_string(v)), "\""] end)

    [name, "{", labels, "} ", number(value), "\n"]
  end

  defp number(value) when is_integer(value), do: Integer.to_string(value)
  defp number(value), do: :erlang.float_to_binary(value, [:short])

  defp metric_name(name) do
    name = String.replace(to_string(name), ~r/[^a-zA-Z0-9_:]/, "_")
    if name =~ ~r/^[0-9]/, do: "_" <> name, else: name
  end

  defp label_name(key) do
    name = String.replace(Atom.to_string(key), ~r/[^a-zA-Z0-9_]/, "_")
    if name =~ ~r/^[0-9]/, do: "_" <> name, else: name
  end

  defp escape(text) do
    text
    |> String.replace("\\", "\\\\")
    |> String.replace("\"", "\\\"")
    |> String.replace("\n", "\\n")
  end

  ## The dashboard's JSON (a small encoder for the snapshot's shapes)

  @doc false
  def json(snapshot) do
    series = fn metrics, fields ->
      metrics
      |> Enum.sort()
      |> Enum.map(fn {{name, tags}, value} ->
        object([
          {"name", to_string(name)},
          {"tags", {:object, Enum.map(tags, fn {k, v} -> {Atom.to_string(k), tag_value(v)} end)}}
          | fields.(value)
        ])
      end)
      |> array()
    end

    object([
      {"node", Atom.to_string(node())},
      {"at", System.monotonic_time(:millisecond)},
      {"counters", {:raw, series.(snapshot.counters, &[{"value", &1}])}},
      {"gauges", {:raw, series.(snapshot.gauges, &[{"value", &1}])}},
      {"histograms",
       {:raw,
        series.(snapshot.histograms, fn summary ->
          for key <- [:count, :min, :max, :mean, :p50, :p90, :p99, :p999],
              do: {Atom.to_string(key), Map.fetch!(summary, key)}
        end)}}
    ])
  end

  defp tag_value(value) when is_integer(value), do: value
  defp tag_value(value), do: to_string(value)

  defp object(pairs) do
    [
      "{",
      pairs
      |> Enum.map(fn {key, value} -> [string(key), ":", value(value)] end)
      |> Enum.intersperse(","),
      "}"
    ]
  end

  defp array(items), do: ["[", Enum.intersperse(items, ","), "]"]

  defp value({:raw, iodata}), do: iodata
  defp value({:object, pairs}), do: object(pairs)
  defp value(value) when is_integer(value), do: Integer.to_string(value)
  defp value(value) when is_float(value), do: :erlang.float_to_binary(value, [:short])
  defp value(value) when is_binary(value), do: string(value)

  defp string(text) do
    text = if String.valid?(text), do: text, else: inspect(text)

    escaped =
      for <<char::utf8 <- text>>, into: "" do
        case char do
          ?" ->
            "\\\""

          ?\\ ->
            "\\\\"

          ?\n ->
            "\\n"

          char when char < 0x20 ->
            "\\u" <> String.pad_leading(Integer.to_string(char, 16), 4, "0")

          char ->
            <<char::utf8>>
        end
      end

    ["\"", escaped, "\""]
  end
end
