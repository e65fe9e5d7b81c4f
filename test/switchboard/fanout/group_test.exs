defmodule Switchboard.Fanout.GroupTest do
  use ExUnit.Case, async: true
  use Switchboard.Property
  import Switchboard.Test.Receivers

  alias Switchboard.Fanout
  alias Switchboard.Fanout.{Group, Pure}

  doctest Switchboard.Fanout.Group

  # Membership, bad input and fan-outs to a group are in FanoutContract,
  # which both twins run; here is what the native group does its own way.

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
