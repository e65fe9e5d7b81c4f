defmodule Switchboard.Metrics.PrometheusTest do
  use ExUnit.Case, async: true

  alias Switchboard.Metrics
  alias Switchboard.Metrics.Prometheus

  setup_all do
    {:ok, _} = Application.ensure_all_started(:inets)
    :ok
  end

  setup do
    server = start_supervised!({Prometheus, port: 0, buckets: [10, 50, 1_000]}, id: make_ref())
    %{port: Prometheus.port(server), tag: "p#{System.unique_integer([:positive])}"}
  end

  defp get(port, path) do
    url = ~c"http://127.0.0.1:#{port}#{path}"

    {:ok, {{_, status, _}, headers, body}} =
      :httpc.request(:get, {url, []}, [], body_format: :binary)

    {status, Map.new(headers, fn {k, v} -> {to_string(k), to_string(v)} end), body}
  end

  # The value of the sample line `name{labels}` in `body`.
  defp sample(body, series) do
    line = Enum.find(String.split(body, "\n"), &String.starts_with?(&1, series <> " "))
    assert line, "no sample #{series} in:\n#{body}"
    line |> String.split(" ") |> List.last() |> Float.parse() |> elem(0)
  end

  test "GET /metrics: counters, gauges and histograms with their numbers", %{port: port, tag: tag} do
    Metrics.increment("prom.requests", 7, run: tag, code: 200)
    Metrics.increment("prom.requests", 2, code: 200, run: tag)
    Metrics.gauge("prom.sessions", 42, run: tag)
    for v <- 1..100, do: Metrics.histogram("prom.latency_us", v, run: tag)

    {200, headers, body} = get(port, "/metrics")
    assert headers["content-type"] =~ "text/plain; version=0.0.4"
    labels = ~s(code="200",run="#{tag}")
    assert sample(body, "prom_requests_total{#{labels}}") == 9
    assert sample(body, ~s(prom_sessions{run="#{tag}"})) == 42
    h = "prom_latency_us"
    assert sample(body, ~s(#{h}_bucket{run="#{tag}",le="10"})) == 10
    assert sample(body, ~s(#{h}_bucket{run="#{tag}",le="50"})) == 50
    assert sample(body, ~s(#{h}_bucket{run="#{tag}",le="1000"})) == 100
    assert sample(body, ~s(#{h}_bucket{run="#{tag}",le="+Inf"})) == 100
    assert sample(body, ~s(#{h}_count{run="#{tag}"})) == 100
    assert sample(body, ~s(#{h}_sum{run="#{tag}"})) == 5050

    for {family, type} <- [
          {"prom_requests_total", "counter"},
          {"prom_sessions", "gauge"},
          {h, "histogram"}
        ] do
      assert body =~ "# TYPE #{family} #{type}\n"
      assert body =~ "# HELP #{family} "
    end

    # Every sample line is name{labels} value or name value.
    for line <- String.split(body, "\n", trim: true), not String.starts_with?(line, "#") do
      assert line =~
               ~r/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*\})? -?[0-9.e+-]+$/
    end
  end

  test "numbers follow the metrics between scrapes", %{port: port, tag: tag} do
    Metrics.increment("prom.follow", 1, run: tag)
    {200, _, first} = get(port, "/metrics")
    Metrics.increment("prom.follow", 4, run: tag)
    {200, _, second} = get(port, "/metrics")
    series = ~s(prom_follow_total{run="#{tag}"})
    assert sample(first, series) == 1
    assert sample(second, series) == 5
  end

  test "label values are escaped and names sanitised", %{port: port, tag: tag} do
    Metrics.gauge("prom-odd name", 1, run: tag, quote: ~s(a"b\\c))
    {200, _, body} = get(port, "/metrics")
    assert sample(body, ~s(prom_odd_name{quote="a\\"b\\\\c",run="#{tag}"})) == 1
  end

  test "/metrics.json is the snapshot as JSON", %{port: port, tag: tag} do
    Metrics.increment("prom.json", 3, run: tag)
    Metrics.histogram("prom.json_us", 12, run: tag)
    {200, headers, body} = get(port, "/metrics.json")
    assert headers["content-type"] == "application/json"
    json = Switchboard.Test.JSON.decode!(body)

    assert %{"name" => "prom.json", "tags" => %{"run" => ^tag}, "value" => 3} =
             Enum.find(
               json["counters"],
               &(&1["name"] == "prom.json" and &1["tags"]["run"] == tag)
             )

    assert %{"count" => 1, "p50" => 12, "p999" => 12, "min" => 12} =
             Enum.find(
               json["histograms"],
               &(&1["name"] == "prom.json_us" and &1["tags"]["run"] == tag)
             )

    assert is_integer(json["at"])
  end

  test "/dashboard is one self-contained page", %{port: port} do
    {200, headers, body} = get(port, "/dashboard")
    assert headers["content-type"] =~ "text/html"
    assert body =~ "<script>"
    assert body =~ "/metrics.json"
    refute body =~ ~r/(src|href)\s*=\s*["']?(https?:)?\/\//i
    refute body =~ ~r/@import|<link /i
  end

  test "unknown paths, other methods and garbage get HTTP errors", %{port: port} do
    assert {404, _, _} = get(port, "/nope")
    url = ~c"http://127.0.0.1:#{port}/metrics"

    assert {:ok, {{_, 405, _}, _, _}} =
             :httpc.request(:post, {url, [], ~c"text/plain", "x"}, [], [])

    for request <- [
          "NOT HTTP AT ALL\r\n\r\n",
          "GET /metrics HTTP/1.1\r\n" <> String.duplicate("x", 10_000) <> "\r\n\r\n"
        ] do
      {:ok, socket} = :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false])
      :ok = :gen_tcp.send(socket, request)
      assert {:ok, "HTTP/1.1 400 Bad Request" <> _} = :gen_tcp.recv(socket, 0, 5_000)
      :gen_tcp.close(socket)
    end
  end

  test "the listener is on loopback only by default", %{port: port} do
    {:ok, addresses} = :inet.getifaddrs()

    external =
      for {_name, opts} <- addresses,
          {:addr, {a, _, _, _} = address} <- opts,
          a != 127,
          do: address

    for address <- external do
      assert {:error, _} = :gen_tcp.connect(address, port, [:binary], 1_000)
    end
  end
end
