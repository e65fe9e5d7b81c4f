defmodule Switchboard.Test.SchedulerHold do
  @moduledoc false
  # How long `work` holds a normal scheduler without yielding, measured by
  # the VM itself: `:erlang.system_monitor/2`'s long_schedule reports every
  # stretch of at least `threshold_ms` that a process runs on a normal
  # scheduler uninterrupted (a NIF call included; time on a dirty scheduler
  # is not such a stretch). Scheduler wake-up latency, which
  # bench/support/scheduler_probe.ex measures for the benchmarks, is too
  # noisy on a shared machine for a test; this counts the offending calls.
  #
  # Returns the durations (ms) of the long stretches of `times` calls.
  # Installs the VM's one system monitor for the while: callers run alone.
  def long_schedules(work, times \\ 3, threshold_ms \\ 50) do
    previous = :erlang.system_monitor(self(), [{:long_schedule, threshold_ms}])

    try do
      {pid, ref} = spawn_monitor(fn -> for _ <- 1..times, do: work.() end)

      receive do
        {:DOWN, ^ref, :process, ^pid, :normal} -> :ok
        {:DOWN, ^ref, :process, ^pid, reason} -> raise "work failed: #{inspect(reason)}"
      end

      collect(pid, [])
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
