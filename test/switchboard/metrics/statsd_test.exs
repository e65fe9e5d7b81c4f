defmodule Switchboard.Metrics.StatsDTest do
  use ExUnit.Case, async: true

  alias Switchboard.Metrics
  alias Switchboard.Metrics.StatsD

  setup do
    {:ok, socket} = :gen_udp.open(0, [:binary, active: false, ip: {127, 0, 0, 1}])
    {:ok, port} = :inet.port(socket)
    prefix = "t#{System.unique_integer([:positive])}"
    %{socket: socket, port: port, prefix: prefix}
  end

  defp start(context, opts \\ []) do
    opts = Keyword.merge([port: context.port, prefix: context.prefix, flush_ms: 60_000], opts)
    start_supervised!({StatsD, opts}, id: make_ref())
  end

  # Every datagram that arrives within `wait` ms, as {datagrams, lines}.
  defp receive_all(socket, wait \\ 200, acc \\ []) do
    case :gen_udp.recv(socket, 0, wait) do
      {:ok, {_address, _port, packet}} ->
        receive_all(socket, wait, [packet | acc])

      {:error, :timeout} ->
        {Enum.reverse(acc), Enum.flat_map(Enum.reverse(acc), &String.split(&1, "\n"))}
    end
  end

  test "counters |c, gauges |g, histograms |h with DogStatsD tags", context do
    reporter = start(context)
    p = context.prefix
    Metrics.increment("req.count", 5, route: "/a", code: 200)
    Metrics.gauge("sessions", 12)
    Metrics.gauge("load", 0.5, zone: :eu)
    for _ <- 1..3, do: Metrics.histogram("lat", 7)
    Metrics.histogram("lat", 1_000)
    assert StatsD.flush(reporter) == :ok
    {_datagrams, lines} = receive_all(context.socket)
    lines = lines |> Enum.map(&String.replace_prefix(&1, p <> ".", "")) |> MapSet.new()
    assert "req.count:5|c|#code:200,route:/a" in lines
    assert "sessions:12|g" in lines
    assert "load:0.5|g|#zone:eu" in lines
    assert "lat:7|h|@0.333333333333" in lines
    assert "lat:1001|h" in lines
  end

  test "deltas by subtraction: each increment is sent exactly once", context do
    reporter = start(context)
    name = "delta.#{context.prefix}"
    Metrics.increment(name, 5)
    :ok = StatsD.flush(reporter)
    Metrics.increment(name, 3)
    :ok = StatsD.flush(reporter)
    :ok = StatsD.flush(reporter)
    {_, lines} = receive_all(context.socket)

    assert Enum.filter(lines, &String.contains?(&1, name <> ":")) == [
             "#{context.prefix}.#{name}:5|c",
             "#{context.prefix}.#{name}:3|c"
           ]
  end

  test "no increment lost or doubled across flushes during a storm", context do
    reporter = start(context)
    name = "storm.#{context.prefix}"
    parent = self()

    workers =
      for _ <- 1..8 do
        spawn_link(fn ->
          for _ <- 1..5_000, do: Metrics.increment(name)
          send(parent, {:done, self()})
        end)
      end

    flusher =
      Task.async(fn ->
        Stream.repeatedly(fn -> StatsD.flush(reporter) end) |> Enum.take(40)
      end)

    for pid <- workers, do: assert_receive({:done, ^pid}, 20_000)
    Task.await(flusher, 20_000)
    :ok = StatsD.flush(reporter)
    {_, lines} = receive_all(context.socket)

    sent =
      for line <- lines, [_, n] <- [Regex.run(~r/\.#{Regex.escape(name)}:(-?\d+)\|c$/, line)] do
        String.to_integer(n)
      end

    assert length(sent) > 1
    assert Enum.sum(sent) == 40_000
    assert Metrics.snapshot().counters[{name, []}] == 40_000
  end

  test "lines are packed into datagrams of at most max_packet bytes", context do
    reporter = start(context, max_packet: 200)
    for i <- 1..50, do: Metrics.gauge("packed.#{context.prefix}.#{i}", i)
    :ok = StatsD.flush(reporter)
    {datagrams, lines} = receive_all(context.socket)
    assert Enum.all?(datagrams, &(byte_size(&1) <= 200))
    assert length(Enum.filter(lines, &String.contains?(&1, "packed."))) == 50
  end

  test "reads the pure twin as well, and flushes when stopped", context do
    reporter = start(context, metrics: Metrics.Pure)
    name = "pure.#{context.prefix}"
    Metrics.Pure.increment(name, 4)
    :ok = StatsD.flush(reporter)
    Metrics.Pure.increment(name, 2)
    GenServer.stop(reporter)
    {_, lines} = receive_all(context.socket)

    assert Enum.filter(lines, &String.contains?(&1, name)) == [
             "#{context.prefix}.#{name}:4|c",
             "#{context.prefix}.#{name}:2|c"
           ]
  end

  test "bad options raise", context do
    Process.flag(:trap_exit, true)
    assert {:error, {%ArgumentError{message: message}, _}} = StatsD.start_link(port: 0)
    assert message == "expected :port to be a UDP port, got: 0"
    assert {:error, {%ArgumentError{}, _}} = StatsD.start_link(port: context.port, flush_ms: 0)
  end
end
