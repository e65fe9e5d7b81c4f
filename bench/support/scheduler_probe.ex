defmodule Switchboard.Bench.SchedulerProbe do
  @moduledoc false
  # Scheduler latency while native code is hammered (jiffy publishes the same
  # measure): `workers` processes call `work` in a loop, one per scheduler by
  # default, while a probe process asks to be woken after 1 ms, over and over,
  # and records how late it actually woke. Compare against the idle row of
  # the same run: `receive after 1` itself wakes on the next timer tick. A NIF that holds a normal scheduler
  # for 10 ms shows up as ~10 ms of lateness.

  @doc """
  Runs `work` (a zero-arity fun) in `:workers` looping processes for
  `:duration_ms` and returns `%{p50_us, p99_us, max_us, samples, calls}`.
  """
  def measure(work, opts \\ []) do
    # One core is left to the probe by default: the probe measures schedulers
    # held by NIFs, and with every core saturated by OS threads (dirty
    # schedulers, native threads) the kernel itself would delay its wake-ups.
    workers = Keyword.get(opts, :workers, max(System.schedulers_online() - 1, 1))
    duration_ms = Keyword.get(opts, :duration_ms, 2_000)
    parent = self()

    pids =
      for _ <- 1..workers do
        spawn_link(fn -> worker_loop(work, parent, 0) end)
      end

    probe =
      Task.async(fn ->
        probe_loop(System.monotonic_time(:microsecond) + duration_ms * 1000, [])
      end)

    delays = Task.await(probe, duration_ms + 120_000)

    calls =
      for pid <- pids, reduce: 0 do
        acc ->
          send(pid, {:stop, self()})

          receive do
            {:calls, ^pid, n} -> acc + n
          after
            120_000 -> raise "scheduler probe worker did not stop"
          end
      end

    sorted = Enum.sort(delays)

    %{
      p50_us: Switchboard.Bench.Harness.percentile(sorted, 0.5),
      p99_us: Switchboard.Bench.Harness.percentile(sorted, 0.99),
      max_us: (List.last(sorted) || 0) * 1.0,
      samples: length(sorted),
      calls: calls
    }
  end

  defp worker_loop(work, parent, calls) do
    receive do
      {:stop, from} -> send(from, {:calls, self(), calls})
    after
      0 ->
        work.()
        worker_loop(work, parent, calls + 1)
    end
  end

  defp probe_loop(deadline, delays) do
    before = System.monotonic_time(:microsecond)

    if before >= deadline do
      delays
    else
      receive do
      after
        1 -> :ok
      end

      late = System.monotonic_time(:microsecond) - before - 1000
      probe_loop(deadline, [max(late, 0) | delays])
    end
  end

  @doc "A table row for the harness's extra rows."
  def row(label, stats) do
    [
      {"probe while", label},
      {"p50 wake-up delay", "#{round(stats.p50_us)} µs"},
      {"p99", "#{round(stats.p99_us)} µs"},
      {"max", "#{round(stats.max_us)} µs"},
      {"probe samples", stats.samples},
      {"NIF calls", stats.calls}
    ]
  end
end
