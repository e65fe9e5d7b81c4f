defmodule Switchboard.FanoutTest do
  use ExUnit.Case, async: true

  use Switchboard.Contracts.FanoutContract,
    implementation: Switchboard.Fanout,
    group: Switchboard.Fanout.Group

  alias Switchboard.Fanout
  alias Switchboard.Fanout.Partitioner
  alias Switchboard.NIF

  doctest Switchboard.Fanout
  doctest Switchboard.Fanout.Partitioner

  # What both twins share is in FanoutContract; here is what the native
  # fan-out does its own way: dead pids counted as skipped, slices and
  # sender threads, the NIFs' own checks, partitioner shares.

  describe "send/3 to local receivers" do
    test "every receiver gets the message once; nils and dead pids are skipped and counted" do
      [a, b, c] = receivers(3)
      dead = dead_pid()

      assert Fanout.send([a, nil, b, dead, c, nil], {:hello, 1}) ==
               %{local: 3, remote: 0, skipped: 3}

      for pid <- [a, b, c], do: assert(mailbox(pid) == [{:hello, 1}])
      kill_all([a, b, c])
    end

    test "a large fan-out reaches everyone exactly once" do
      pids = receivers(20_000)
      dead = for _ <- 1..50, do: dead_pid()
      list = Enum.shuffle(pids ++ dead ++ List.duplicate(nil, 10))

      assert Fanout.send(list, :big) == %{local: 20_000, remote: 0, skipped: 60}
      assert Enum.all?(pids, &(mailbox(&1) == [:big]))
      kill_all(pids)
    end

    test "a long fan-out is sent in slices: the caller is scheduled out many times" do
      pids = receivers(30_000)
      parent = self()

      # The inline NIF itself: Fanout.send hands a list this long to the
      # sender threads when the node has several.
      caller =
        spawn(fn ->
          receive do
            :go -> send(parent, {:sent, NIF.fanout_send(pids, :sliced)})
          end
        end)

      :erlang.trace(caller, true, [:running])
      send(caller, :go)
      assert_receive {:sent, {30_000, 0, []}}, 30_000

      outs = count_outs(caller, 0)
      # Each slice is ~0.5 ms; 30k sends take far longer than a few slices.
      assert outs > 5, "expected many slices, the caller was scheduled out #{outs} times"
      kill_all(pids)
    end
  end

  defp count_outs(pid, n) do
    receive do
      {:trace, ^pid, :out, _} -> count_outs(pid, n + 1)
      {:trace, ^pid, _, _} -> count_outs(pid, n)
    after
      100 -> n
    end
  end

  describe "offload" do
    test "returns at once and delivers on the sender thread" do
      pids = receivers(5_000)
      dead = dead_pid()

      assert Fanout.send([dead, nil | pids], :offloaded, offload: true) ==
               %{local: 5_001, remote: 0, skipped: 1}

      assert Fanout.sync() == :ok
      assert Enum.all?(pids, &(mailbox(&1) == [:offloaded]))
      kill_all(pids)
    end

    test "an inline fan-out behind pending offloaded work waits and reports exact counts" do
      pids = receivers(3_000)
      dead = dead_pid()
      Fanout.send(pids, 1, offload: true)
      assert Fanout.send([dead | pids], 2) == %{local: 3_000, remote: 0, skipped: 1}
      assert Enum.all?(pids, &(mailbox(&1) == [1, 2]))
      kill_all(pids)
    end

    test "sync/0 with nothing pending returns at once" do
      assert Fanout.sync() == :ok
    end
  end

  describe "ordering" do
    test "large inline and offloaded fan-outs interleave without reordering" do
      pids = receivers(12_000)

      for n <- 1..6 do
        Fanout.send(pids, n, offload: rem(n, 2) == 0)
      end

      Fanout.sync()
      assert Enum.all?(pids, &(mailbox(&1) == [1, 2, 3, 4, 5, 6]))
      kill_all(pids)
    end
  end

  describe "metrics" do
    test "every send is counted in Switchboard.Metrics" do
      counter = fn name -> Map.get(Switchboard.Metrics.snapshot().counters, {name, []}, 0) end
      sends = counter.("switchboard.fanout.sends")
      deliveries = counter.("switchboard.fanout.deliveries")
      skipped = counter.("switchboard.fanout.skipped")
      Fanout.send([self(), nil, self()], :counted)
      # Other tests fan out at the same time: at least ours are counted.
      assert counter.("switchboard.fanout.sends") >= sends + 1
      assert counter.("switchboard.fanout.deliveries") >= deliveries + 2
      assert counter.("switchboard.fanout.skipped") >= skipped + 1
    end
  end

  describe "bad input" do
    test "the native checks themselves, called directly" do
      assert_raise ArgumentError, "expected a list of pids, got: :foo", fn ->
        NIF.fanout_send(:foo, :msg)
      end

      assert_raise ArgumentError,
                   "expected the end of the list of pids to be [], got: :bar",
                   fn -> NIF.fanout_send([nil, nil | :bar], :msg) end

      # Far down the list, after the walk has yielded a few times.
      long = List.duplicate(nil, 200_000) ++ [:x]

      assert_raise ArgumentError, "expected a pid or nil in the receiver list, got: :x", fn ->
        NIF.fanout_send(long, :msg)
      end

      assert_raise ArgumentError, "expected a list of pids, got: 7", fn ->
        NIF.fanout_offload(7, :msg, nil, nil, nil)
      end

      # The offload walk checks everything (yielding on the way) before it
      # queues anything.
      [a] = receivers(1)

      assert_raise ArgumentError, "expected a pid or nil in the receiver list, got: :x", fn ->
        NIF.fanout_offload([a | long], :msg, nil, nil, nil)
      end

      assert_raise ArgumentError,
                   "expected the end of the list of pids to be [], got: :bar",
                   fn -> NIF.fanout_offload([a | :bar], :msg, nil, nil, nil) end

      assert_raise ArgumentError, "expected a binary or nil, got: :packed", fn ->
        NIF.fanout_offload([a], :msg, :packed, nil, nil)
      end

      assert_raise ArgumentError, "expected {pid, ref} or nil, got: {1, 2}", fn ->
        NIF.fanout_offload([a], :msg, nil, nil, {1, 2})
      end

      Fanout.sync()
      assert mailbox(a) == []

      assert_raise ArgumentError, ~r/^expected argument 1 to be a resource/, fn ->
        NIF.fanout_ticket_done(make_ref())
      end
    end

    test "the remote pids come back whole: the list itself when it has no other entry" do
      remote = for n <- 1..100, do: remote_pid(:a@host, n)
      [a] = receivers(1)

      # All remote: the caller's own list, in its order (shared, not copied).
      assert NIF.fanout_send(remote, :msg) == {0, 0, remote}
      assert NIF.fanout_send([], :msg) == {0, 0, []}

      # Mixed: every remote pid exactly once, wherever the others are.
      for list <- [[a | remote], remote ++ [nil], Enum.intersperse(remote, a)] do
        {delivered, skipped, got} = NIF.fanout_send(list, :msg)
        assert Enum.sort(got) == Enum.sort(remote)
        assert delivered + skipped == length(list) - length(remote)
      end

      # Longer than the shared prefix may be (copied then), and a local pid
      # after the walk has yielded.
      long = for n <- 1..70_000, do: remote_pid(:b@host, n)

      for list <- [long, long ++ [a]] do
        {_delivered, 0, got} = NIF.fanout_send(list, :msg)
        assert Enum.sort(got) == Enum.sort(long)
      end

      kill_all([a])
    end
  end

  describe "partitioner" do
    test "delivers a fan-out message the way a remote sender sends it, packed or not" do
      [a, b] = receivers(2)
      dead = dead_pid()
      before = Partitioner.stats()
      send(Partitioner, {:"$switchboard_fanout", [a, dead, b], false, :plain})

      send(
        Partitioner,
        {:"$switchboard_fanout", [a, b], true, :erlang.term_to_binary(%{packed: true})}
      )

      # Its workers deliver and then report back: wait for both shares.
      after_ = await_partitioner(before, 5, 100)
      assert after_.messages - before.messages == 2
      assert after_.delivered - before.delivered == 4
      assert after_.skipped - before.skipped == 1
      assert mailbox(a) == [:plain, %{packed: true}]
      assert mailbox(b) == [:plain, %{packed: true}]
      kill_all([a, b])
    end
  end

  describe "partitioner shares" do
    test "every local pid lands in exactly one share, the same one each time" do
      pids = receivers(50)
      dead = dead_pid()
      list = [nil | pids] ++ [dead, hd(pids)]
      {shares, skipped} = Fanout.partition(list, 3)
      assert tuple_size(shares) == 3
      assert skipped == 1

      results =
        for share <- Tuple.to_list(shares), share != nil do
          Fanout.deliver_share(share, :share_hello)
        end

      # The dead pid is local, so it is in a share, and skipped when sent to.
      assert Enum.reduce(results, {0, 0}, fn {d, s}, {ad, as} -> {ad + d, as + s} end) ==
               {51, 1}

      assert mailbox(hd(pids)) == [:share_hello, :share_hello]
      assert Enum.all?(tl(pids), &(mailbox(&1) == [:share_hello]))

      # The same split again puts every pid in the same share.
      {again, 1} = Fanout.partition(list, 3)

      for {share, index} <- Enum.with_index(Tuple.to_list(shares)), share != nil do
        Fanout.deliver_share(share, {:first, index})
        Fanout.deliver_share(elem(again, index), {:second, index})
      end

      for pid <- pids do
        tagged = pid |> mailbox() |> Enum.reject(&(&1 == :share_hello)) |> Enum.uniq()
        assert [{:first, index}, {:second, index}] = tagged
      end

      kill_all(pids)
    end

    test "empty shares are nil" do
      assert Fanout.partition([], 4) == {{nil, nil, nil, nil}, 0}
      assert Fanout.partition([nil, nil], 1) == {{nil}, 2}
    end

    test "bad input raises as send/3 does" do
      assert_raise ArgumentError, "expected a list of pids, got: :foo", fn ->
        Fanout.partition(:foo, 2)
      end

      assert_raise ArgumentError,
                   "expected the end of the list of pids to be [], got: :bar",
                   fn -> Fanout.partition([self() | :bar], 2) end

      # Far down the list, after the walk has yielded.
      long = List.duplicate(self(), 200_000) ++ [:x]

      assert_raise ArgumentError, "expected a pid or nil in the receiver list, got: :x", fn ->
        Fanout.partition(long, 2)
      end

      assert_raise ArgumentError, "expected a share count from 1 to 1024, got: 0", fn ->
        Fanout.partition([self()], 0)
      end

      assert_raise ArgumentError, "expected a fan-out share, got: :nope", fn ->
        Fanout.deliver_share(:nope, :msg)
      end
    end

    test "a malformed fan-out message is dropped whole and counted" do
      [a] = receivers(1)
      before = Partitioner.stats()
      send(Partitioner, {:"$switchboard_fanout", [a, :not_a_pid], false, :dropped})
      send(Partitioner, {:"$switchboard_fanout", [a], true, "not etf"})
      send(Partitioner, {:"$switchboard_fanout", [a], true, :not_a_binary})
      send(Partitioner, {:"$switchboard_fanout", [a], false, :after})
      after_ = await_partitioner(before, 1, 100)
      assert after_.messages - before.messages == 4
      assert after_.rejected - before.rejected == 3
      assert mailbox(a) == [:after]
      kill_all([a])
    end
  end

  # A pid of another node (never connected): NEW_PID_EXT, creation 1.
  defp remote_pid(node, number) do
    name = Atom.to_string(node)

    :erlang.binary_to_term(
      <<131, 88, 119, byte_size(name), name::binary, number::32, 0::32, 1::32>>
    )
  end

  defp await_partitioner(before, receivers, tries) do
    stats = Partitioner.stats()
    done = stats.delivered + stats.skipped - before.delivered - before.skipped

    if done >= receivers or tries == 0 do
      stats
    else
      Process.sleep(10)
      await_partitioner(before, receivers, tries - 1)
    end
  end

  describe "properties" do
    # The summaries the model expects of the native fan-out: dead local
    # pids are skipped inline and counted as local when offloaded (the
    # sender thread finds them dead later).
    defp model_summaries(sends) do
      for {slots, opts} <- sends do
        live = Enum.count(slots, &is_integer/1)
        nils = Enum.count(slots, &is_nil/1)
        dead = Enum.count(slots, &(&1 == :dead))
        if opts[:offload], do: {live + dead, nils}, else: {live, nils + dead}
      end
    end

    property_test "native summaries match the model", numtests: 60 do
      forall sends <- list(tuple([list(contract_slot()), contract_options()])) do
        {summaries, _mailboxes} = run_scenario(Fanout, sends)
        Enum.map(summaries, &{&1.local, &1.skipped}) == model_summaries(sends)
      end
    end
  end
end
