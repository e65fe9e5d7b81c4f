defmodule Switchboard.Fanout.GroupTest do
  use ExUnit.Case, async: true
  use Switchboard.Property
  import Switchboard.Test.Receivers

  alias Switchboard.Fanout
  alias Switchboard.Fanout.{Group, Pure}

  doctest Switchboard.Fanout.Group
  doctest Switchboard.Fanout.Pure.Group

  # A pid of a node that does not exist (NEW_PID_EXT).
  defp remote_pid do
    node = "other@nowhere"
    :erlang.binary_to_term(<<131, 88, 119, byte_size(node), node::binary, 1::32, 0::32, 1::32>>)
  end

  for impl <- [Group, Pure.Group] do
    @mod impl
    @send if impl == Group, do: Fanout, else: Pure

    describe "#{inspect(impl)}" do
      test "membership: add, remove, member?, size, to_list" do
        [a, b, c] = receivers(3)
        group = @mod.new([a, b, a])
        assert @mod.size(group) == 2
        assert @mod.member?(group, a) and not @mod.member?(group, c)
        assert @mod.add(group, c) == group
        assert @mod.add(group, c) == group
        assert Enum.sort(@mod.to_list(group)) == Enum.sort([a, b, c])
        assert @mod.remove(group, a) == group
        assert @mod.remove(group, a) == group
        assert Enum.sort(@mod.to_list(group)) == Enum.sort([b, c])
        assert @mod.size(@mod.new()) == 0
        kill_all([a, b, c])
      end

      test "bad input raises ArgumentError naming the term" do
        assert_raise ArgumentError,
                     "expected a local pid in the group's member list, got: :x",
                     fn ->
                       @mod.new([self(), :x])
                     end

        remote = remote_pid()

        assert_raise ArgumentError,
                     ~r/expected a local pid in the group's member list, got: #PID/,
                     fn ->
                       @mod.new([remote])
                     end

        assert_raise ArgumentError, "expected a list of pids, got: :x", fn -> @mod.new(:x) end

        assert_raise ArgumentError,
                     "expected a proper list of pids, got a list ending in: :tail",
                     fn ->
                       @mod.new([self() | :tail])
                     end

        group = @mod.new()
        assert_raise ArgumentError, "expected a local pid, got: 1", fn -> @mod.add(group, 1) end

        assert_raise ArgumentError, ~r/expected a local pid, got: #PID/, fn ->
          @mod.add(group, remote)
        end

        assert_raise ArgumentError, "expected a local pid, got: nil", fn ->
          @mod.remove(group, nil)
        end

        assert_raise ArgumentError, "expected a local pid, got: :a", fn ->
          @mod.member?(group, :a)
        end

        assert_raise ArgumentError, ~r/expected a Switchboard.Fanout.*Group, got: %{}/, fn ->
          @mod.size(%{})
        end

        assert_raise ArgumentError, ~r/got: \[\]/, fn -> @mod.add([], self()) end
        assert_raise ArgumentError, ~r/got: :nope/, fn -> @mod.to_list(:nope) end
        assert_raise ArgumentError, fn -> @send.send(group, :m, offload: :yes) end
      end

      test "inline and offloaded fan-outs reach every member, in order" do
        members = receivers(50)
        group = @mod.new(members)
        assert %{local: 50, remote: 0, skipped: 0} = @send.send(group, 1)
        assert %{local: 50} = @send.send(group, 2, offload: true)
        assert %{local: 50} = @send.send(members, 3, offload: true)
        assert %{local: 50} = @send.send(group, 4)
        assert %{local: 50} = @send.send(group, 5, offload: true)
        assert :ok = @send.sync()
        for pid <- members, do: assert(mailbox(pid) == [1, 2, 3, 4, 5])
        kill_all(members)
      end

      test "a fan-out keeps the members it started with" do
        members = receivers(200)
        group = @mod.new(members)
        @send.send(group, :before_removal, offload: true)
        Enum.each(members, &@mod.remove(group, &1))
        assert @mod.size(group) == 0
        @send.sync()
        for pid <- members, do: assert(mailbox(pid) == [:before_removal])
        assert @send.send(group, :nobody) == %{local: 0, remote: 0, skipped: 0}
        kill_all(members)
      end
    end
  end

  test "dead members are skipped and counted by the native group" do
    [a] = receivers(1)
    dead = dead_pid()
    group = Group.new([a, dead])
    assert Fanout.send(group, :m) == %{local: 1, remote: 0, skipped: 1}
    assert Fanout.send(group, :m, offload: true) == %{local: 2, remote: 0, skipped: 0}
    assert Fanout.sync() == :ok
    assert Fanout.send(group, :m, offload: false) == %{local: 1, remote: 0, skipped: 1}
    assert mailbox(a) == [:m, :m, :m]
    kill_all([a])
  end

  test "a large group is built, sent to (in many slices) and listed without blocking" do
    collector = self()

    members =
      for i <- 1..20_000 do
        spawn(fn ->
          receive do
            :go -> send(collector, {:got, i})
          end
        end)
      end

    group = Group.new(members)
    assert Group.size(group) == 20_000
    assert length(Group.to_list(group)) == 20_000
    assert Fanout.send(group, :go) == %{local: 20_000, remote: 0, skipped: 0}
    for i <- 1..20_000, do: assert_receive({:got, ^i})
  end

  test "a group is shared: changes from another process are seen" do
    group = Group.new()
    [a] = receivers(1)
    Task.await(Task.async(fn -> Group.add(group, a) end))
    assert Group.member?(group, a)
    assert inspect(group) == "#Switchboard.Fanout.Group<size: 1>"
    kill_all([a])
  end

  property_test "membership after random operations matches the pure twin", numtests: 100 do
    pool = receivers(8)

    forall ops <- list(tuple([oneof([:add, :remove]), integer(0, 7)])) do
      native = Group.new(Enum.take(pool, 3))
      pure = Pure.Group.new(Enum.take(pool, 3))

      Enum.all?(ops, fn {op, i} ->
        pid = Enum.at(pool, i)
        apply(Group, op, [native, pid])
        apply(Pure.Group, op, [pure, pid])

        Group.size(native) == Pure.Group.size(pure) and
          Group.member?(native, pid) == Pure.Group.member?(pure, pid)
      end) and Enum.sort(Group.to_list(native)) == Enum.sort(Pure.Group.to_list(pure))
    end
  end
end
