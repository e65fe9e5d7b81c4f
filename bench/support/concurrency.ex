defmodule Switchboard.Bench.Concurrency do
  @moduledoc false
  # Per-operation cost with N processes working at once, for operations far
  # too small to time one by one (a semaphore acquire, a counter add).
  #
  # Each implementation runs `total_ops` operations split over `procs`
  # processes that start together; the figure is the wall time from the
  # start signal to the last process's end, divided by the operations done:
  # the cost of one operation in a loaded system, what a user sees as
  # throughput. Implementations are interleaved round by round (the order
  # rotating each round), so a burst of noise from the rest of the machine
  # falls on all of them alike; each round gives one figure per
  # implementation, and Harness.run_latency reports their median and p99.

  alias Switchboard.Bench.Harness

  @doc """
  Runs `rounds` interleaved rounds of every `{label, loop}` in `impls`;
  `loop.(ops)` does `ops` operations in the calling process. Returns
  `%{label => [ns per operation, one per round]}`.

  `clock` (a function returning ns) is what is read before and after each
  round: wall time by default; a CPU clock of the whole VM (e.g.
  `Switchboard.Test.NIF.diag_process_cpu_ns/0`) gives CPU time per
  operation, which other programs on a shared machine do not inflate.
  """
  def interleaved(impls, procs, total_ops, rounds, clock \\ &wall_ns/0) do
    per_process = max(div(total_ops, procs), 1)

    results =
      for round <- 1..rounds, {label, loop} <- rotate(impls, round) do
        {label, ns_per_op(loop, procs, per_process, clock)}
      end

    Enum.group_by(results, &elem(&1, 0), &elem(&1, 1))
  end

  defp rotate(list, round) do
    shift = rem(round, length(list))
    Enum.drop(list, shift) ++ Enum.take(list, shift)
  end

  defp wall_ns, do: System.monotonic_time(:nanosecond)

  defp ns_per_op(loop, procs, per_process, clock) do
    parent = self()

    pids =
      for _ <- 1..procs do
        spawn_link(fn ->
          receive do
            :go -> :ok
          end

          loop.(per_process)
          send(parent, {:done, self()})
        end)
      end

    # Let every process reach its receive before the clock starts.
    Process.sleep(5)
    start = clock.()
    Enum.each(pids, &send(&1, :go))

    for pid <- pids do
      receive do
        {:done, ^pid} -> :ok
      end
    end

    (clock.() - start) / (procs * per_process)
  end

  @doc """
  A Harness.run_latency job from interleaved results: `baseline` and
  `candidates` are labels of `results`.
  """
  def job(name, results, baseline, candidates) do
    runner = fn label -> {label, fn -> Map.fetch!(results, label) end} end
    %{name: name, baseline: runner.(baseline), candidates: Enum.map(candidates, runner)}
  end

  @doc "The median of a label's rounds."
  def median(results, label), do: Harness.percentile(Enum.sort(Map.fetch!(results, label)), 0.5)
end
