defmodule Switchboard.Test.SchedulerHold do
  @moduledoc false
  # The scheduler probe for unit tests: how long a call held its normal
  # scheduler, as the VM itself reports it (`:erlang.system_monitor/2`
  # `long_schedule`: a process that ran for more than the threshold without
  # being scheduled out). A dirty NIF runs on a dirty scheduler and reports
  # nothing; a NIF that holds a normal scheduler for 150 ms reports ~150 ms.
  # The system monitor is node-wide: tests using this are not async.

  # Well above what a loaded test machine adds by itself, well below the
  # holds the tests guard against (100 ms and more).
  @threshold_ms 40

  @doc """
  Runs `fun` in a fresh process and returns the longest time, in ms, it held
  a normal scheduler above #{@threshold_ms} ms, or `nil` when it never did.
  `fun`'s result is sent back and returned as well: `{held, result}`.
  """
  def measure(fun, opts \\ []) do
    threshold = Keyword.get(opts, :threshold_ms, @threshold_ms)
    parent = self()
    previous = :erlang.system_monitor(self(), [{:long_schedule, threshold}])

    try do
      {pid, ref} = spawn_monitor(fn -> send(parent, {:result, self(), fun.()}) end)

      result =
        receive do
          {:result, ^pid, result} -> result
          {:DOWN, ^ref, _, _, reason} -> exit(reason)
        end

      receive do: ({:DOWN, ^ref, _, _, _} -> :ok)
      {longest_hold(pid, nil), result}
    after
      restore(previous)
    end
  end

  defp longest_hold(pid, longest) do
    receive do
      {:monitor, ^pid, :long_schedule, info} ->
        longest_hold(pid, max(longest || 0, Keyword.fetch!(info, :timeout)))
    after
      0 -> longest
    end
  end

  defp restore(:undefined), do: :erlang.system_monitor(:undefined)
  defp restore({pid, options}), do: :erlang.system_monitor(pid, options)
end
