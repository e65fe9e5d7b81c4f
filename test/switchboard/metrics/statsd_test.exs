defmodule Switchboard.Metrics.StatsDTest do
  use ExUnit.Case, async: true

  alias Switchboard.Metrics
  alias Switchboard.Metrics.StatsD

  setup do
    {:ok, socket} =
      :gen_udp.open(0, [:binary, active: false, ip: {127, 0, 0, 1}, recbuf: 4_194_304])

    {:ok, port} = :inet.port(socket)
    prefix = "t#{System.unique_integer([:positive])}"
    %{socket: socket, port: port, prefix: prefix}
  end

  defp start(context, opts \\ []) do
    # Other tests' metrics are not sent: a burst of them could overflow the
    # socket's buffer, and UDP drops what does not fit.
    tag = context.prefix
    only = fn {name, _tags} -> String.contains?(to_string(name), tag) end
    opts = Keyword.merge([port: context.port, prefix: tag, flush_ms: 60_000, only: only], opts)
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
    Metrics.increment("#{p}.req", 5, route: "/a", code: 200)
    Metrics.gauge("#{p}.sessions", 12)
    Metrics.gauge("#{p}.load", 0.5, zone: :eu)
    for _ <- 1..3, do: Metrics.histogram("#{p}.lat", 7)
    Metrics.histogram("#{p}.lat", 1_000)
    assert StatsD.flush(reporter) == :ok
    {_datagrams, lines} = receive_all(context.socket)

    assert Enum.sort(lines) ==
             Enum.sort([
               "#{p}.#{p}.req:5|c|#code:200,route:/a",
               "#{p}.#{p}.sessions:12|g",
               "#{p}.#{p}.load:0.5|g|#zone:eu",
               "#{p}.#{p}.lat:7|h|@0.333333333333",
               "#{p}.#{p}.lat:1001|h"
             ])
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

    # Each worker does half its increments, waits for a flush of them, then
    # the rest while a flusher storms: at least two flushes carry a delta
    # however fast the increments are.
    workers =
      for _ <- 1..8 do
        spawn_link(fn ->
          for _ <- 1..2_500, do: Metrics.increment(name)
          send(parent, {:half, self()})
          assert_receive :go, 20_000
          for _ <- 1..2_500, do: Metrics.increment(name)
          send(parent, {:done, self()})
        end)
      end

    for pid <- workers, do: assert_receive({:half, ^pid}, 20_000)
    :ok = StatsD.flush(reporter)
    for pid <- workers, do: send(pid, :go)

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
    assert {:error, {%ArgumentError{}, _}} = StatsD.start_link(port: context.port, only: :all)
  end
end
