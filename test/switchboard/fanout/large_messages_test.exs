defmodule Switchboard.Fanout.LargeMessagesTest do
  # Not async: SchedulerHold uses the node-wide system monitor.
  use ExUnit.Case, async: false

  import Switchboard.Test.Receivers

  alias Switchboard.Fanout
  alias Switchboard.Fanout.Group
  alias Switchboard.Test.SchedulerHold

  # A send copies the message into each receiver: a large message is as
  # much work per receiver as thousands of small ones, so the fan-out must
  # pace itself by bytes, not by sends.
  @receivers 16

  setup do
    pids = receivers(@receivers)
    on_exit(fn -> kill_all(pids) end)
    # About 5 MB on the heap: a few ms to copy, per receiver.
    %{pids: pids, message: {:big, Enum.to_list(1..300_000)}}
  end

  defp assert_all_got(pids, count) do
    for pid <- pids do
      assert [{:big, list} | _] = mailbox(pid)
      assert length(list) == 300_000
      assert length(mailbox(pid)) == count
    end
  end

  test "an inline fan-out of a large message to a list does not hold the scheduler", %{
    pids: pids,
    message: message
  } do
    {held, summary} = SchedulerHold.measure(fn -> Fanout.send(pids, message) end)
    assert held == nil
    assert summary == %{local: @receivers, remote: 0, skipped: 0}
    assert_all_got(pids, 1)
  end

  test "to a group, inline and offloaded, and offloaded to a list", %{
    pids: pids,
    message: message
  } do
    group = Group.new(pids)

    {held, summaries} =
      SchedulerHold.measure(fn ->
        inline = Fanout.send(group, message)
        offloaded = Fanout.send(group, message, offload: true)
        listed = Fanout.send(pids, message, offload: true)
        Fanout.sync()
        [inline, offloaded, listed]
      end)

    assert held == nil
    assert Enum.all?(summaries, &(&1.local == @receivers))
    assert_all_got(pids, 3)
  end
end
