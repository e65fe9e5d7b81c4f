defmodule Switchboard.Bench.Burst do
  @moduledoc false
  # Bursts of events for the session benchmarks: `run/3` calls `fun` in a
  # process at high priority, with the guild and its relays raised to high
  # priority (from inside each process) for the call, so that events
  # published back to back are queued at their receivers before those run
  # (all of them under `+S 1`; on more schedulers the others run receivers
  # meanwhile). With `burst` 1 it calls `fun` as it is.

  def run(_guild, 1, fun), do: fun.()

  def run(guild, _burst, fun) do
    priority(guild, :high)
    caller = self()

    pid =
      spawn_link(fn ->
        Process.flag(:priority, :high)
        send(caller, {__MODULE__, self(), fun.()})
      end)

    receive do
      {__MODULE__, ^pid, result} ->
        Process.unlink(pid)
        priority(guild, :normal)
        result
    end
  end

  # Frames per wake-up of a receiver, about: frames over the VM's context
  # switches (each wake-up is one; the guild's and relays' add a few).
  def switches, do: elem(:erlang.statistics(:context_switches), 0)

  defp priority(guild, level) do
    set = fn state ->
      Process.flag(:priority, level)
      state
    end

    :sys.replace_state(guild, set)
    relays = :sys.get_state(guild).relays
    if relays, do: Enum.each(Tuple.to_list(relays), &:sys.replace_state(&1, set))
  end
end
