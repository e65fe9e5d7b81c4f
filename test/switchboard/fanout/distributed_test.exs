defmodule Switchboard.Fanout.DistributedTest do
  # Real BEAM nodes on this machine (OTP's :peer over loopback). Runs in the
  # default `mix test`; the tag only lets a developer skip it locally.
  use ExUnit.Case, async: false

  @moduletag :distributed
  @moduletag timeout: 180_000

  alias Switchboard.{Fanout, Peer}
  alias Switchboard.Fanout.{Partitioner, Pure, Sender}

  @implementations [
    native: {Fanout, Sender, Partitioner},
    pure: {Pure, Pure.Sender, Pure.Partitioner}
  ]

  setup_all do
    ensure_distributed!()
    peers = for _ <- 1..3, do: start_peer()
    on_exit(fn -> Enum.each(peers, fn {peer, _node} -> stop_peer(peer) end) end)
    %{nodes: Enum.map(peers, &elem(&1, 1))}
  end

  # ---------------------------------------------------------------------------
  # Nodes and receivers

  defp ensure_distributed!, do: Peer.ensure_distributed!("switchboard_test")

  defp start_peer, do: Peer.start("fanout_peer")

  defp stop_peer(peer), do: Peer.stop(peer)

  # Receivers that never take a message, so their mailbox is the record.
  defp receivers(node, n) when node == node() do
    for _ <- 1..n, do: spawn(fn -> Process.sleep(:infinity) end)
  end

  defp receivers(node, n), do: for(_ <- 1..n, do: Node.spawn(node, :timer, :sleep, [:infinity]))

  defp mailbox(pid) do
    {:messages, messages} = :erpc.call(node(pid), :erlang, :process_info, [pid, :messages])
    messages
  end

  defp mailbox_length(pid) do
    {:message_queue_len, n} =
      :erpc.call(node(pid), :erlang, :process_info, [pid, :message_queue_len])

    n
  end

  # Remote delivery is asynchronous: wait until every receiver holds at
  # least `n` messages (or time out), then read the mailboxes.
  defp await_mailboxes(pids, n, timeout \\ 30_000) do
    deadline = System.monotonic_time(:millisecond) + timeout

    Enum.each(pids, fn pid ->
      wait_for(fn -> mailbox_length(pid) >= n end, deadline)
    end)

    # Anything extra (duplicates) would have arrived by now too.
    Process.sleep(50)
    Map.new(pids, &{&1, mailbox(&1)})
  end

  defp wait_for(condition, deadline) do
    cond do
      condition.() ->
        :ok

      System.monotonic_time(:millisecond) > deadline ->
        flunk("timed out waiting for deliveries")

      true ->
        Process.sleep(10)
        wait_for(condition, deadline)
    end
  end

  defp kill_all(pids), do: Enum.each(pids, &Process.exit(&1, :kill))

  @modes [[], [offload: true], [pack: :binary], [offload: true, pack: :binary]]

  # ---------------------------------------------------------------------------

  for {label, {implementation, _sender, _partitioner}} <- @implementations do
    @implementation implementation

    test "#{label}: every receiver on every node gets each message once, in order", %{
      nodes: nodes
    } do
      all = Enum.flat_map([node() | nodes], &receivers(&1, 40))
      list = Enum.shuffle(all ++ [nil, nil])

      for n <- 1..40 do
        summary = @implementation.send(list, {:seq, n}, Enum.at(@modes, rem(n, 4)))
        assert summary.remote == 120
        assert summary.skipped == 2
      end

      @implementation.sync()
      expected = for n <- 1..40, do: {:seq, n}
      mailboxes = await_mailboxes(all, 40)
      assert Enum.all?(all, &(mailboxes[&1] == expected))
      kill_all(all)
    end

    test "#{label}: deliver: :packed gives every receiver one ETF binary, in order", %{
      nodes: nodes
    } do
      all = Enum.flat_map([node() | nodes], &receivers(&1, 20))

      for n <- 1..8 do
        opts = [deliver: :packed, offload: rem(n, 2) == 0]
        remote = 20 * length(nodes)
        assert %{remote: ^remote} = @implementation.send(Enum.shuffle(all), %{"seq" => n}, opts)
      end

      @implementation.sync()
      mailboxes = await_mailboxes(all, 8)

      for pid <- all do
        assert [{:switchboard_packed, first} | _] = mailboxes[pid]
        assert is_binary(first)

        assert Enum.map(mailboxes[pid], &@implementation.unpack/1) ==
                 for(n <- 1..8, do: %{"seq" => n})
      end

      kill_all(all)
    end
  end

  for {label, {implementation, sender, partitioner}} <- @implementations do
    @implementation implementation
    @sender sender
    @partitioner partitioner

    test "#{label}: one distribution message per remote node per fan-out", %{nodes: nodes} do
      # How we count: every message our processes put on a distribution link
      # is a send to another node. The caller and its sender process are
      # traced for sends; each partitioner also counts what it received.
      caller = self()
      sender = @sender.for_caller!()
      all = Enum.flat_map([node() | nodes], &receivers(&1, 25))
      before = Map.new(nodes, &{&1, partitioner_messages(@partitioner, &1)})

      :erlang.trace(caller, true, [:send])
      :erlang.trace(sender, true, [:send])
      fanouts = 12

      for n <- 1..fanouts do
        @implementation.send(Enum.shuffle(all), n, Enum.at(@modes, rem(n, 4)))
      end

      @implementation.sync()
      # The caller's own sends are done; the sender may still be routing.
      :erlang.trace(caller, false, [:send])
      await_mailboxes(all, fanouts)
      :erlang.trace(sender, false, [:send])

      remote_sends = collect_remote_sends([caller, sender], [])
      # Nothing goes from the caller straight onto a link; the sender sends
      # one message per node per fan-out, to that node's partitioner.
      assert Enum.all?(remote_sends, fn {from, _to, _msg} -> from == sender end)
      assert length(remote_sends) == fanouts * length(nodes)

      for node <- nodes do
        to_node = Enum.filter(remote_sends, fn {_, to, _} -> to == {@partitioner, node} end)
        assert length(to_node) == fanouts
        assert partitioner_messages(@partitioner, node) - before[node] == fanouts

        # Pack mode put one binary on the wire; other modes the term.
        for {_, _, {:"$switchboard_fanout", pids, packed, payload}} <- to_node do
          assert length(pids) == 25
          assert is_binary(payload) == packed
          if packed, do: assert(is_integer(:erlang.binary_to_term(payload)))
        end
      end

      kill_all(all)
    end
  end

  defp partitioner_messages(partitioner, node), do: partitioner.stats(node).messages

  defp collect_remote_sends(traced, acc) do
    receive do
      {:trace, from, :send, message, to} ->
        if remote?(to) and from in traced do
          collect_remote_sends(traced, [{from, to, message} | acc])
        else
          collect_remote_sends(traced, acc)
        end
    after
      200 -> Enum.reverse(acc)
    end
  end

  defp remote?({_name, node}) when is_atom(node), do: node != node()
  defp remote?(pid) when is_pid(pid), do: node(pid) != node()
  defp remote?(_), do: false

  test "dead pids on a remote node are skipped by its partitioner", %{nodes: [node | _]} do
    [live, dead] = receivers(node, 2)
    :erpc.call(node, Process, :exit, [dead, :kill])
    before = Partitioner.stats(node)
    assert Fanout.send([live, dead], :hello) == %{local: 0, remote: 2, skipped: 0}
    await_mailboxes([live], 1)
    # The workers report to the partitioner after delivering.
    wait_for(
      fn ->
        stats = Partitioner.stats(node)
        stats.delivered + stats.skipped - before.delivered - before.skipped == 2
      end,
      deadline(5_000)
    )

    after_ = Partitioner.stats(node)
    assert after_.delivered - before.delivered == 1
    assert after_.skipped - before.skipped == 1
  end

  for {label, {implementation, _sender, _partitioner}} <- @implementations do
    @implementation implementation

    test "#{label}: a node going down mid-fan-out is skipped; the others get everything",
         %{nodes: [steady | _]} do
      {doomed_peer, doomed} = start_peer()
      local = receivers(node(), 20)
      survivors = receivers(steady, 20)
      doomed_receivers = receivers(doomed, 20)
      list = local ++ survivors ++ doomed_receivers
      sender_pool = if @implementation == Fanout, do: Sender, else: Pure.Sender
      skipped_before = sender_pool.stats().nodes_skipped
      test = self()
      implementation = @implementation

      sender =
        Task.async(fn ->
          for n <- 1..300 do
            implementation.send(list, n, Enum.at(@modes, rem(n, 4)))
            if n == 100, do: send(test, :halfway)
            if rem(n, 10) == 0, do: Process.sleep(2)
          end

          implementation.sync()
          :done
        end)

      assert_receive :halfway, 30_000
      stop_peer(doomed_peer)
      assert Task.await(sender, 60_000) == :done

      mailboxes = await_mailboxes(local ++ survivors, 300)
      assert Enum.all?(local ++ survivors, &(mailboxes[&1] == Enum.to_list(1..300)))
      refute doomed in Node.list()

      assert sender_pool.stats().nodes_skipped > skipped_before

      kill_all(local ++ survivors)
    end
  end

  defp deadline(ms), do: System.monotonic_time(:millisecond) + ms
end
