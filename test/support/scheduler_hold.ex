defmodule Switchboard.Test.SchedulerHold do
  @moduledoc false
  # The scheduler probe for unit tests: how long a call held its normal
  # scheduler, as the VM itself reports it (`:erlang.system_monitor/2`
  # `long_schedule`: a process that ran for more than the threshold without
  # being scheduled out, a NIF call included). A dirty NIF runs on a dirty
  # scheduler and reports nothing; a NIF that holds a normal scheduler for
  # 150 ms reports ~150 ms. Scheduler wake-up latency, which
  # bench/support/scheduler_probe.ex measures for the benchmarks, is too
  # noisy on a shared machine for a test. The system monitor is node-wide:
  # tests using this are not async.

  # Well above what a loaded test machine adds by itself, well below the
  # holds the tests guard against (100 ms and more).
  @threshold_ms 40

  @doc """
  Runs `fun` in a fresh process and returns the longest time, in ms, it held
  a normal scheduler above #{@threshold_ms} ms, or `nil` when it never did.
  `fun`'s result is sent back and returned as well: `{held, result}`.
  """
  def measure(fun, opts \\ []) do
    {durations, result} = monitored(fun, Keyword.get(opts, :threshold_ms, @threshold_ms))
    {Enum.max(durations, fn -> nil end), result}
  end

  @doc "The durations (ms) of the long stretches of `times` calls of `work`."
  def long_schedules(work, times \\ 3, threshold_ms \\ 50) do
    {durations, _} = monitored(fn -> for _ <- 1..times, do: work.() end, threshold_ms)
    durations
  end

  defp monitored(fun, threshold_ms) do
    parent = self()
    previous = :erlang.system_monitor(self(), [{:long_schedule, threshold_ms}])

    try do
      {pid, ref} = spawn_monitor(fn -> send(parent, {:result, self(), fun.()}) end)

      result =
        receive do
          {:result, ^pid, result} -> result
          {:DOWN, ^ref, _, _, reason} -> raise "work failed: #{inspect(reason)}"
        end

      receive do: ({:DOWN, ^ref, _, _, _} -> :ok)
      {collect(pid, []), result}
    after
      restore(previous)
    end
  end

  defp collect(pid, durations) do
    receive do
      {:monitor, ^pid, :long_schedule, info} -> collect(pid, [info[:timeout] | durations])
    after
      0 -> durations
    end
  end

  defp restore(:undefined), do: :erlang.system_monitor(:undefined)
  defp restore({pid, options}), do: :erlang.system_monitor(pid, options)
end
