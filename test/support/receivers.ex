defmodule Switchboard.Test.Receivers do
  @moduledoc false
  # Processes for fan-out tests: receivers that never take a message (what
  # arrives stays in the mailbox, in arrival order, for the test to read).
  import ExUnit.Assertions

  def receivers(n), do: for(_ <- 1..n//1, do: spawn(fn -> Process.sleep(:infinity) end))

  def dead_pid do
    pid = spawn(fn -> :ok end)
    ref = Process.monitor(pid)
    # Generous: under a loaded test run the exit can take a while.
    assert_receive {:DOWN, ^ref, _, _, _}, 10_000
    pid
  end

  def mailbox(pid) do
    {:messages, messages} = Process.info(pid, :messages)
    messages
  end

  def kill_all(pids), do: Enum.each(pids, &Process.exit(&1, :kill))
end
