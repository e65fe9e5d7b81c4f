defmodule Switchboard.FanoutTest do
  use ExUnit.Case, async: true
  use Switchboard.Property
  import Switchboard.Test.Receivers

  alias Switchboard.Fanout
  alias Switchboard.Fanout.{Partitioner, Pure}
  alias Switchboard.NIF

  doctest Switchboard.Fanout
  doctest Switchboard.Fanout.Pure
  doctest Switchboard.Fanout.Partitioner

  describe "send/3 to local receivers" do
    test "every receiver gets the message once; nils and dead pids are skipped and counted" do
      [a, b, c] = receivers(3)
      dead = dead_pid()

      assert Fanout.send([a, nil, b, dead, c, nil], {:hello, 1}) ==
               %{local: 3, remote: 0, skipped: 3}

      for pid <- [a, b, c], do: assert(mailbox(pid) == [{:hello, 1}])
      kill_all([a, b, c])
    end

    test "a pid listed twice gets the message twice" do
      [a] = receivers(1)
      assert %{local: 2} = Fanout.send([a, a], :twice)
      assert mailbox(a) == [:twice, :twice]
    end

    test "an empty list sends nothing" do
      assert Fanout.send([], :nothing) == %{local: 0, remote: 0, skipped: 0}
      assert Fanout.send([nil], :nothing, offload: true) == %{local: 0, remote: 0, skipped: 1}
    end

    test "receivers get the original term, large binaries and maps included" do
      [a, b] = receivers(2)
      big = :binary.copy("x", 100_000)
      message = %{text: "hi", blob: big, nested: [{1, 2.5}, %{deep: self()}]}

      Fanout.send([a], message)
      Fanout.send([b], message, offload: true, pack: :binary)
      Fanout.sync()
      assert mailbox(a) == [message]
      assert mailbox(b) == [message]
      kill_all([a, b])
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

      caller =
        spawn(fn ->
          receive do
            :go -> send(parent, {:sent, Fanout.send(pids, :sliced)})
          end
        end)

      :erlang.trace(caller, true, [:running])
      send(caller, :go)
      assert_receive {:sent, %{local: 30_000}}, 30_000

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

  describe "deliver: :packed" do
    test "local receivers share one encoded binary; unpack/1 gives the message back" do
      [a, b] = receivers(2)
      message = %{"op" => 0, "d" => %{"content" => String.duplicate("x", 200)}}

      for impl <- [Fanout, Pure] do
        assert %{local: 2} = impl.send([a, b], message, deliver: :packed)
      end

      group = Fanout.Group.new([a])
      assert %{local: 1} = Fanout.send(group, message, deliver: :packed, offload: true)
      Fanout.sync()

      for pid <- [a, b] do
        for packed <- mailbox(pid) do
          assert {:switchboard_packed, bytes} = packed
          assert bytes == :erlang.term_to_binary(message)
          assert Fanout.unpack(packed) == message
          assert Pure.unpack(packed) == message
        end
      end

      assert length(mailbox(a)) == 3 and length(mailbox(b)) == 2
      kill_all([a, b])
    end

    test "a bad :deliver value is an ArgumentError" do
      for impl <- [Fanout, Pure] do
        assert_raise ArgumentError, "expected :deliver to be :term or :packed, got: :nope", fn ->
          impl.send([self()], :m, deliver: :nope)
        end
      end
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
    test "one sender's fan-outs arrive in order whatever the mix of modes" do
      pids = receivers(300)
      modes = [[], [offload: true], [pack: :binary], [offload: true, pack: :binary]]

      for n <- 1..200 do
        Fanout.send(pids, n, Enum.at(modes, rem(n * 7, 4)))
      end

      Fanout.sync()
      assert Enum.all?(pids, &(mailbox(&1) == Enum.to_list(1..200)))
      kill_all(pids)
    end

    test "large inline and offloaded fan-outs interleave without reordering" do
      pids = receivers(12_000)

      for n <- 1..6 do
        Fanout.send(pids, n, offload: rem(n, 2) == 0)
      end

      Fanout.sync()
      assert Enum.all?(pids, &(mailbox(&1) == [1, 2, 3, 4, 5, 6]))
      kill_all(pids)
    end

    test "the pure twin keeps the same order" do
      pids = receivers(100)

      for n <- 1..100 do
        Pure.send(pids, n, offload: rem(n, 3) == 0)
      end

      Pure.sync()
      assert Enum.all?(pids, &(mailbox(&1) == Enum.to_list(1..100)))
      kill_all(pids)
    end
  end

  describe "bad input" do
    for {label, opts} <- [inline: [], offload: [offload: true]] do
      test "#{label}: a non-list is an ArgumentError naming the term" do
        assert_raise ArgumentError, "expected a list of pids, got: foo", fn ->
          Fanout.send(:foo, :msg, unquote(opts))
        end

        assert_raise ArgumentError, ~s(expected a list of pids, got: <<"pids">>), fn ->
          Fanout.send("pids", :msg, unquote(opts))
        end
      end

      test "#{label}: an improper list names its tail" do
        assert_raise ArgumentError,
                     "expected a proper list of pids, got a list ending in: foo",
                     fn -> Fanout.send([self() | :foo], :msg, unquote(opts)) end
      end

      test "#{label}: a non-pid entry is named, and nothing is sent" do
        [a] = receivers(1)

        assert_raise ArgumentError,
                     "expected a pid or nil in the receiver list, got: {not,a,pid}",
                     fn -> Fanout.send([a, {:not, :a, :pid}], :msg, unquote(opts)) end

        # Far down a long list too, after the first slices would have run.
        long = receivers(10_000)

        assert_raise ArgumentError, "expected a pid or nil in the receiver list, got: 42", fn ->
          Fanout.send(long ++ [42], :msg, unquote(opts))
        end

        Fanout.sync()
        assert mailbox(a) == []
        assert Enum.all?(long, &(mailbox(&1) == []))
        kill_all([a | long])
      end
    end

    test "the native checks themselves, called directly" do
      assert_raise ArgumentError, "expected a list of pids, got: foo", fn ->
        NIF.fanout_send(:foo, :msg)
      end

      assert_raise ArgumentError,
                   "expected a proper list of pids, got a list ending in: bar",
                   fn -> NIF.fanout_send([nil, nil | :bar], :msg) end

      # Far down the list, after the walk has yielded a few times.
      long = List.duplicate(nil, 200_000) ++ [:x]

      assert_raise ArgumentError, "expected a pid or nil in the receiver list, got: x", fn ->
        NIF.fanout_send(long, :msg)
      end

      assert_raise ArgumentError, "expected a list of pids, got: 7", fn ->
        NIF.fanout_offload(7, :msg, nil, nil, nil)
      end

      # The offload walk checks everything (yielding on the way) before it
      # queues anything.
      [a] = receivers(1)

      assert_raise ArgumentError, "expected a pid or nil in the receiver list, got: x", fn ->
        NIF.fanout_offload([a | long], :msg, nil, nil, nil)
      end

      assert_raise ArgumentError,
                   "expected a proper list of pids, got a list ending in: bar",
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

    test "unknown or malformed options raise" do
      assert_raise ArgumentError, ~r/unknown keys \[:pack_mode\]/, fn ->
        Fanout.send([], :msg, pack_mode: :binary)
      end

      assert_raise ArgumentError, "expected :pack to be :binary or nil, got: :zip", fn ->
        Fanout.send([], :msg, pack: :zip)
      end

      assert_raise ArgumentError, "expected :offload to be a boolean, got: 1", fn ->
        Fanout.send([], :msg, offload: 1)
      end
    end

    test "the pure twin raises ArgumentError for the same input" do
      assert_raise ArgumentError, "expected a list of pids, got: :foo", fn ->
        Pure.send(:foo, :msg)
      end

      assert_raise ArgumentError,
                   "expected a proper list of pids, got a list ending in: :foo",
                   fn -> Pure.send([self() | :foo], :msg, offload: true) end

      assert_raise ArgumentError, "expected a pid or nil in the receiver list, got: 1", fn ->
        Pure.send([1], :msg)
      end
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
      assert_raise ArgumentError, "expected a list of pids, got: foo", fn ->
        Fanout.partition(:foo, 2)
      end

      assert_raise ArgumentError,
                   "expected a proper list of pids, got a list ending in: bar",
                   fn -> Fanout.partition([self() | :bar], 2) end

      # Far down the list, after the walk has yielded.
      long = List.duplicate(self(), 200_000) ++ [:x]

      assert_raise ArgumentError, "expected a pid or nil in the receiver list, got: x", fn ->
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
    # A scenario: a few receivers, a list drawn from them (with repeats),
    # dead pids and nils, and a sequence of sends with random options.
    defp slot, do: oneof([integer(0, 5), exactly(:dead), exactly(nil)])

    defp options do
      oneof([
        exactly([]),
        exactly(offload: true),
        exactly(pack: :binary),
        exactly(offload: true, pack: :binary)
      ])
    end

    defp run_scenario(implementation, sends) do
      live = receivers(6)
      dead = dead_pid()
      resolve = fn slots -> Enum.map(slots, &resolve(&1, live, dead)) end

      summaries =
        for {{slots, opts}, n} <- Enum.with_index(sends) do
          implementation.send(resolve.(slots), {:m, n}, opts)
        end

      implementation.sync()
      mailboxes = Enum.map(live, &mailbox/1)
      kill_all(live)
      {summaries, mailboxes}
    end

    defp resolve(:dead, _live, dead), do: dead
    defp resolve(nil, _live, _dead), do: nil
    defp resolve(i, live, _dead), do: Enum.at(live, i)

    # What the model says each receiver holds, and each summary.
    defp model(sends) do
      mailboxes =
        for receiver <- 0..5 do
          for {{slots, _opts}, n} <- Enum.with_index(sends),
              _ <- Enum.filter(slots, &(&1 == receiver)),
              do: {:m, n}
        end

      summaries =
        for {slots, opts} <- sends do
          live = Enum.count(slots, &is_integer/1)
          nils = Enum.count(slots, &is_nil/1)
          dead = Enum.count(slots, &(&1 == :dead))
          if opts[:offload], do: {live + dead, nils}, else: {live, nils + dead}
        end

      {summaries, mailboxes}
    end

    property_test "native fan-out matches the model: exactly once, in order", numtests: 60 do
      forall sends <- list(tuple([list(slot()), options()])) do
        {summaries, mailboxes} = run_scenario(Fanout, sends)
        {expected_summaries, expected_mailboxes} = model(sends)

        mailboxes == expected_mailboxes and
          Enum.map(summaries, &{&1.local, &1.skipped}) == expected_summaries and
          Enum.all?(summaries, &(&1.remote == 0))
      end
    end

    property_test "the pure twin delivers exactly what the native fan-out does", numtests: 40 do
      forall sends <- list(tuple([list(slot()), options()])) do
        {_, native} = run_scenario(Fanout, sends)
        {_, pure} = run_scenario(Pure, sends)
        native == pure
      end
    end
  end
end
