# One fan-out to many local receivers, sent by one core or split over the
# schedulers (inline) or the sender threads (offload) (issue 15):
# deliveries per second and per CPU-second of each way, beside Enum.each +
# send/2 from the same run.
#
#   for t in 1 2 4; do
#     SWITCHBOARD_FANOUT_THREADS=$t ERL_FLAGS="+sbwt none +sbwtdcpu none +sbwtdio none" \
#       MIX_ENV=prod mix run bench/fanout_parallel.exs
#   done
#
# The thread count is fixed when the library loads, so each count is its
# own VM; inside one, "the caller alone" and "one thread" are the same VM
# with the split share raised past the fan-out (no split).
# A sample is one fan-out of a 1 KB map to FANOUT_PARALLEL_RECEIVERS
# (100,000) receivers that take their messages (a receive loop counting
# into an :atomics), timed from the call until the last receiver has taken
# its message: every part of the delivery, the receivers' own included.
# CPU is the whole VM's (CLOCK_PROCESS_CPUTIME_ID: schedulers and sender
# threads), which the other programs of a shared machine do not inflate;
# wall time is printed too. Jobs are interleaved round by round (the order
# rotating), FANOUT_PARALLEL_ROUNDS (5) rounds, medians. Quick mode
# (SWITCHBOARD_BENCH_QUICK=1): 10,000 receivers, 3 rounds.
#
# The second table (FANOUT_PARALLEL_THRESHOLD=0 to skip) is for the split
# share: fan-outs of 256 to 16,384 receivers, split as far as they go (a
# share of 1) or not at all, CPU and wall time per delivery.
Code.require_file("../test/support/test_nif.ex", __DIR__)

defmodule FanoutParallelBench do
  alias Switchboard.{Fanout, NIF}

  @never 1_000_000_000

  def run do
    env = fn name, default -> String.to_integer(System.get_env(name, default)) end
    # Quick mode (make demo): 10,000 receivers, 3 rounds.
    quick? = System.get_env("SWITCHBOARD_BENCH_QUICK", "") not in ["", "0"]
    receivers = env.("FANOUT_PARALLEL_RECEIVERS", if(quick?, do: "10000", else: "100000"))
    rounds = env.("FANOUT_PARALLEL_ROUNDS", if(quick?, do: "3", else: "5"))
    %{sender_threads: threads, split_share: share} = Fanout.stats()
    message = Map.new(1..24, fn i -> {"key#{i}", String.duplicate(<<?a + rem(i, 26)>>, 20)} end)
    {:ok, load} = File.read("/proc/loadavg")

    IO.puts("""
    fanout_parallel: #{threads} sender thread(s), #{System.schedulers_online()} schedulers, \
    #{:erlang.system_info(:logical_processors_available)} cores, load #{Enum.take(String.split(load), 3) |> Enum.join(" ")}, \
    #{receivers} receivers, 1 KB map (#{byte_size(:erlang.term_to_binary(message))} B as ETF), \
    #{rounds} rounds
    """)

    counter = :atomics.new(2, [])
    pids = spawn_receivers(receivers, counter)
    group = Fanout.Group.new(pids)
    jobs = jobs(pids, group, message, threads, share)
    results = interleave(jobs, rounds, counter, receivers)
    print_table(jobs, results, receivers, threads)

    if env.("FANOUT_PARALLEL_THRESHOLD", "1") != 0 do
      share_table(counter, message, rounds, share)
    end

    NIF.fanout_set_split_share(share)
    Enum.each(pids, &Process.exit(&1, :kill))
  end

  defp jobs(pids, group, message, threads, share) do
    unsplit = fn fun ->
      fn ->
        NIF.fanout_set_split_share(@never)
        fun.()
        NIF.fanout_set_split_share(share)
      end
    end

    schedulers = System.schedulers_online()
    split = if threads > 1, do: ", split over #{threads} threads", else: " (one thread)"

    [
      {"Enum.each + send/2 (baseline)", fn -> Enum.each(pids, &send(&1, message)) end},
      {"Fanout.send inline, the caller alone", unsplit.(fn -> Fanout.send(pids, message) end)},
      {"Fanout.send inline, split over #{schedulers} schedulers (default)",
       fn -> Fanout.send(pids, message) end},
      {"Fanout.send to a Group inline, split over #{schedulers} schedulers",
       fn -> Fanout.send(group, message) end},
      {"Fanout.send offload + sync, one thread",
       unsplit.(fn -> Fanout.send(pids, message, offload: true) && Fanout.sync() end)},
      {"Fanout.send offload + sync#{split}",
       fn -> Fanout.send(pids, message, offload: true) && Fanout.sync() end}
    ]
  end

  defp spawn_receivers(n, counter) do
    parent = self()
    for _ <- 1..n, do: spawn(fn -> consume(counter, parent) end)
  end

  defp consume(counter, parent) do
    receive do
      _ ->
        if :atomics.add_get(counter, 1, 1) == :atomics.get(counter, 2), do: send(parent, :all_in)
        consume(counter, parent)
    end
  end

  # One sample: {wall ns, CPU ns} from the call until the target-th message
  # has been taken.
  defp sample(fun, counter, target) do
    :atomics.put(counter, 1, 0)
    :atomics.put(counter, 2, target)
    :erlang.garbage_collect()
    cpu = Switchboard.Test.NIF.diag_process_cpu_ns()
    wall = System.monotonic_time(:nanosecond)
    fun.()

    receive do
      :all_in -> :ok
    after
      120_000 -> raise "a fan-out did not arrive"
    end

    {System.monotonic_time(:nanosecond) - wall, Switchboard.Test.NIF.diag_process_cpu_ns() - cpu}
  end

  defp interleave(jobs, rounds, counter, target) do
    # A warm-up sample of each, untimed.
    Enum.each(jobs, fn {_, fun} -> sample(fun, counter, target) end)

    for round <- 1..rounds, {label, fun} <- rotate(jobs, round), reduce: %{} do
      acc ->
        Map.update(
          acc,
          label,
          [sample(fun, counter, target)],
          &[sample(fun, counter, target) | &1]
        )
    end
  end

  defp rotate(list, round) do
    shift = rem(round, length(list))
    Enum.drop(list, shift) ++ Enum.take(list, shift)
  end

  defp median(values) do
    sorted = Enum.sort(values)
    Enum.at(sorted, div(length(sorted), 2))
  end

  defp print_table(jobs, results, receivers, threads) do
    figures =
      for {label, _} <- jobs do
        samples = Map.fetch!(results, label)
        wall = median(Enum.map(samples, &elem(&1, 0)))
        cpu = median(Enum.map(samples, &elem(&1, 1)))
        {label, receivers / (wall / 1.0e9), receivers / (cpu / 1.0e9), cpu / wall}
      end

    [{_, base_wall, base_cpu, _} | _] = figures

    IO.puts(
      """
      #### One fan-out of a 1 KB map to #{receivers} receivers, #{threads} sender thread(s)

      | job | deliveries/s (wall) | x baseline | deliveries per CPU-second | x baseline | cores busy |
      |---|---:|---:|---:|---:|---:|
      """ <>
        Enum.map_join(figures, "\n", fn {label, wall, cpu, cores} ->
          "| #{label} | #{rate(wall)} | #{ratio(wall / base_wall)} | #{rate(cpu)} | #{ratio(cpu / base_cpu)} | #{Float.round(cores, 2)} |"
        end) <> "\n"
    )
  end

  # Fan-outs of several sizes, split as far as they go (a share of 1) or not, both
  # inline (the caller's scheduler or the threads) and offloaded (one thread
  # or all): CPU ns and wall ns per delivery, medians of interleaved rounds.
  defp share_table(counter, message, rounds, share) do
    sizes = [256, 512, 1024, 2048, 4096, 16_384]
    pids = spawn_receivers(List.last(sizes), counter)

    IO.write("""
    #### Split or not, by fan-out size (CPU / wall ns per delivery, #{rounds} rounds, each sample ~64k deliveries)

    | receivers | inline, the caller alone | inline, split over the schedulers | offload, one thread | offload, split over the threads |
    |---:|---:|---:|---:|---:|
    """)

    for size <- sizes do
      receivers = Enum.take(pids, size)
      repeats = max(div(65_536, size), 1)

      variants = [
        {@never, fn -> Fanout.send(receivers, message) end},
        {1, fn -> Fanout.send(receivers, message) end},
        {@never, fn -> Fanout.send(receivers, message, offload: true) && Fanout.sync() end},
        {1, fn -> Fanout.send(receivers, message, offload: true) && Fanout.sync() end}
      ]

      jobs =
        for {{split_at, fun}, index} <- Enum.with_index(variants) do
          {index,
           fn ->
             NIF.fanout_set_split_share(split_at)
             for _ <- 1..repeats, do: fun.()
             NIF.fanout_set_split_share(share)
           end}
        end

      results = interleave(jobs, rounds, counter, size * repeats)

      cells =
        Enum.map_join(0..3, " | ", fn index ->
          samples = Map.fetch!(results, index)
          per = fn pick -> round(median(Enum.map(samples, pick)) / (size * repeats)) end
          "#{per.(&elem(&1, 1))} / #{per.(&elem(&1, 0))}"
        end)

      IO.puts("| #{size} | #{cells} |")
    end

    Enum.each(pids, &Process.exit(&1, :kill))
  end

  defp rate(value) when value >= 1.0e6, do: "#{Float.round(value / 1.0e6, 2)} M"
  defp rate(value), do: "#{Float.round(value / 1.0e3, 1)} k"
  defp ratio(value), do: "#{:erlang.float_to_binary(value, decimals: 2)}x"
end

FanoutParallelBench.run()
