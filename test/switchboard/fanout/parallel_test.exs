defmodule Switchboard.Fanout.ParallelTest do
  # Split fan-outs (see "Parallel delivery" in Switchboard.Fanout): inline
  # ones over one process per scheduler, offloaded ones over the sender
  # threads. The thread count is fixed when the library loads, so the
  # order and summary checks run on a :peer node started with 4 sender
  # threads and 4 schedulers, and a split share of 16 receivers so that
  # every fan-out of a few hundred receivers is split as far as it goes.
  use ExUnit.Case, async: false

  @moduletag :distributed
  @moduletag timeout: 300_000

  import Switchboard.Test.Receivers

  alias Switchboard.{Fanout, NIF, Peer}
  alias Switchboard.Test.{FanoutOrder, SchedulerHold}

  setup_all do
    Peer.ensure_distributed!("switchboard_test")

    {peer, node} =
      Peer.start("fanout_parallel_peer", [], [
        {"SWITCHBOARD_FANOUT_THREADS", "4"},
        {"ERL_FLAGS", "+S 4:4"}
      ])

    :ok = :erpc.call(node, NIF, :fanout_set_split_share, [16])
    on_exit(fn -> Peer.stop(peer) end)
    %{node: node}
  end

  test "the peer has the threads and schedulers asked for", %{node: node} do
    assert %{sender_threads: 4, split_share: 16} = :erpc.call(node, Fanout, :stats, [])
    assert :erpc.call(node, :erlang, :system_info, [:schedulers_online]) == 4
    # On this node (unless the variable is set): one thread per core.
    if System.get_env("SWITCHBOARD_FANOUT_THREADS") == nil do
      assert Fanout.stats().sender_threads == min(:erlang.system_info(:logical_processors), 64)
    end
  end

  test "interleaved fan-outs of every kind from several callers keep each receiver's order",
       %{node: node} do
    before = :erpc.call(node, Fanout, :stats, [])

    for seed <- 1..3 do
      # Receivers on this node are remote pids to the peer's callers.
      remote = receivers(8)
      result = :erpc.call(node, FanoutOrder, :run, [4, 40, 400, remote, seed], 120_000)
      assert result.wrong_summaries == []
      # Every kind was made, many times.
      assert map_size(result.kinds) == 6

      for {pid, messages} <- result.mailboxes do
        expected = Map.get(result.expected, pid, [])
        assert length(messages) == length(expected)
        assert FanoutOrder.in_order?(messages, expected), "receiver #{inspect(pid)} out of order"
      end

      # The remote part goes through the peer's sender processes and this
      # node's partitioner: wait for it, then check it the same way.
      for pid <- remote do
        expected = Map.get(result.expected, pid, [])
        await_mailbox(pid, length(expected))
        assert FanoutOrder.in_order?(mailbox(pid), expected)
      end

      kill_all(remote)
    end

    stats = :erpc.call(node, Fanout, :stats, [])
    assert stats.split_fanouts > before.split_fanouts
    assert stats.helper_chunks >= before.helper_chunks
  end

  test "split decisions and shares", %{node: node} do
    peer = fn fun, args -> :erpc.call(node, NIF, fun, args) end
    pids = :erpc.call(node, FanoutOrder, :spawn_sleepers, [100])

    # 100 local pids in shares of at least 16: at most 6 shares.
    assert peer.(:fanout_split, [pids, 4]) == 4
    assert peer.(:fanout_split, [pids, 64]) == 6
    assert peer.(:fanout_split, [Enum.take(pids, 31), 4]) == 1
    assert peer.(:fanout_split, [List.duplicate(nil, 500), 4]) == 1
    assert peer.(:fanout_split, [:not_a_list, 4]) == 1

    # Every local pid in exactly one share; nils counted, remote pids back.
    list = [nil | pids] ++ [self(), nil]
    {shares, 2, [me]} = peer.(:fanout_split_list, [list, 3])
    assert me == self()
    assert tuple_size(shares) == 3

    assert_raise ArgumentError, "expected a pid or nil in the receiver list, got: :x", fn ->
      NIF.fanout_split_list([self(), :x], 2)
    end

    # Far down a long list, after the walk has yielded; and an improper one.
    long = List.duplicate(self(), 200_000) ++ [:x]

    assert_raise ArgumentError, "expected a pid or nil in the receiver list, got: :x", fn ->
      NIF.fanout_split_list(long, 2)
    end

    assert_raise ArgumentError, "expected the end of the list of pids to be [], got: :tail", fn ->
      NIF.fanout_split_list([self() | :tail], 2)
    end

    # Through send/3, nothing is sent before the bad entry is found.
    [a] = receivers(1)

    assert_raise ArgumentError, "expected a pid or nil in the receiver list, got: :x", fn ->
      Fanout.send(List.duplicate(a, 4_096) ++ [:x], :never)
    end

    assert mailbox(a) == []
    kill_all([a])

    assert_raise ArgumentError, "expected a share count from 1 to 1024, got: 0", fn ->
      NIF.fanout_split_list([], 0)
    end

    :erpc.call(node, FanoutOrder, :kill, [pids])
  end

  describe "on this node" do
    test "a group's shares cover every member once, in ranges" do
      pids = receivers(10)
      group = Fanout.Group.new(pids)
      shares = NIF.fanout_group_shares(group.ref, 4)
      assert tuple_size(shares) == 4

      sent =
        for share <- Tuple.to_list(shares), share != nil do
          NIF.fanout_share_send(share, :ranged)
        end

      assert Enum.sum(Enum.map(sent, &elem(&1, 0))) == 10
      assert Enum.all?(pids, &(mailbox(&1) == [:ranged]))
      # More shares than members: the empty ones are nil.
      assert NIF.fanout_group_shares(Fanout.Group.new([hd(pids)]).ref, 3)
             |> Tuple.to_list()
             |> Enum.count(&is_nil/1) == 2

      kill_all(pids)
    end

    test "a split fan-out whose receivers all land in one share, and a high-priority caller" do
      [a] = receivers(1)
      list = List.duplicate(a, 2_048)
      # Two shares asked for, one filled: the caller sends it alone.
      assert NIF.fanout_split(list, 2) == 2
      assert Fanout.send(list, :again) == %{local: 2_048, remote: 0, skipped: 0}
      assert length(mailbox(a)) == 2_048

      pids = receivers(2_048)
      parent = self()

      spawn(fn ->
        Process.flag(:priority, :high)
        send(parent, {:sent, Fanout.send(pids, :urgent)})
      end)

      assert_receive {:sent, %{local: 2_048, remote: 0, skipped: 0}}, 30_000
      assert Enum.all?(pids, &(mailbox(&1) == [:urgent]))
      kill_all([a | pids])
    end

    test "a big split fan-out holds no scheduler and reaches everyone once" do
      pids = receivers(50_000)
      dead = dead_pid()
      message = Map.new(1..24, fn i -> {"key#{i}", String.duplicate("x", 20)} end)
      list = [dead, nil | pids]
      assert NIF.fanout_split(list, 2) == 2

      {held, summary} = SchedulerHold.measure(fn -> Fanout.send(list, message) end)
      assert held == nil
      assert summary == %{local: 50_000, remote: 0, skipped: 2}

      group = Fanout.Group.new(pids)
      {held, summary} = SchedulerHold.measure(fn -> Fanout.send(group, :to_group) end)
      assert held == nil
      assert summary == %{local: 50_000, remote: 0, skipped: 0}

      assert Enum.all?(pids, &(mailbox(&1) == [message, :to_group]))
      kill_all(pids)
    end
  end

  defp await_mailbox(pid, n, tries \\ 500) do
    {:message_queue_len, len} = Process.info(pid, :message_queue_len)

    cond do
      len >= n -> :ok
      tries == 0 -> flunk("#{inspect(pid)} got #{len} of #{n} messages")
      true -> Process.sleep(20) && await_mailbox(pid, n, tries - 1)
    end
  end
end
