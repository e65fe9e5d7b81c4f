defmodule Switchboard.SortedSetTest do
  use ExUnit.Case, async: true
  use Switchboard.Contracts.SortedSetContract, implementation: Switchboard.SortedSet

  alias Switchboard.SortedSet
  alias Switchboard.SortedSet.Pure

  doctest Switchboard.SortedSet

  describe "native specifics" do
    test "memory: well under 48 bytes of native overhead per small item" do
      small = SortedSet.from_enumerable(1..10) |> SortedSet.memory()
      large = SortedSet.from_enumerable(1..100_000) |> SortedSet.memory()
      assert large > small
      assert large / 100_000 < 48
    end

    test "the set is shared and changed in place, like an ETS table" do
      set = SortedSet.from_enumerable([1, 2])
      task = Task.async(fn -> SortedSet.add(set, 3) end)
      assert Task.await(task) == set
      assert SortedSet.to_list(set) == [1, 2, 3]
      copy = SortedSet.copy(set)
      SortedSet.clear(set)
      assert SortedSet.size(set) == 0
      assert SortedSet.to_list(copy) == [1, 2, 3]
    end

    test "a forged struct is refused by the NIF" do
      forged = %SortedSet{ref: make_ref()}

      assert_raise ArgumentError,
                   ~r/^expected argument 1 to be a Switchboard.SortedSet reference, got: #Reference</,
                   fn -> SortedSet.size(forged) end
    end

    test "terms nested too deeply are refused, not a crash" do
      deep = Enum.reduce(1..5000, :leaf, fn _, acc -> {acc} end)

      assert_raise ArgumentError, ~r/^term nested deeper than 1000 levels/, fn ->
        SortedSet.new() |> SortedSet.add(deep)
      end
    end
  end

  describe "large inputs (dirty scheduler paths)" do
    test "bulk build, to_list, slice, range, copy and clear over 200k items" do
      items = Enum.shuffle(1..200_000)
      set = SortedSet.from_enumerable(items)
      assert SortedSet.size(set) == 200_000
      assert SortedSet.to_list(set) == Enum.to_list(1..200_000)
      assert SortedSet.slice(set, 1000, 50_000) == Enum.to_list(1001..51_000)
      assert SortedSet.range(set, 500, 100_499) == Enum.to_list(500..100_499)
      copy = SortedSet.copy(set)
      SortedSet.clear(set)
      assert SortedSet.size(set) == 0
      assert SortedSet.size(copy) == 200_000
      assert SortedSet.from_sorted(1..200_000) |> SortedSet.at(-1) == 200_000
    end
  end

  describe "items holding references (as ETS keeps them)" do
    # A magic reference (an atomics ref, a NIF resource such as another set)
    # lives while some term refers to it; ETS keeps its own copy of each
    # object, so the reference stays usable after its creator exits.
    defp create_and_exit(fun) do
      parent = self()
      {pid, monitor} = spawn_monitor(fn -> send(parent, {:made, fun.()}) end)
      assert_receive {:made, made}
      assert_receive {:DOWN, ^monitor, :process, ^pid, :normal}
      made
    end

    test "an atomics ref and a set stay alive after their creator exits, like in ETS" do
      table = :ets.new(:refs, [:ordered_set, :public])
      set = SortedSet.new()

      # Each container gets objects of its own: an object one of them keeps
      # alive would otherwise look alive in the other too.
      create_and_exit(fn ->
        for {insert, value} <- [{&:ets.insert(table, {&1}), 41}, {&SortedSet.add(set, &1), 42}] do
          atomics = :atomics.new(1, [])
          :atomics.put(atomics, 1, value)
          inner = SortedSet.from_enumerable([value])
          fun = fn -> atomics end
          Enum.each([{:atomics, atomics}, {:set, inner}, {:fun, fun}], insert)
        end

        :ok
      end)

      :erlang.garbage_collect()
      [{{:atomics, ets_atomics}}, {{:fun, ets_fun}}, {{:set, ets_inner}}] = :ets.tab2list(table)
      assert :atomics.get(ets_atomics, 1) == 41
      assert :atomics.get(ets_fun.(), 1) == 41
      assert SortedSet.to_list(ets_inner) == [41]

      assert [{:atomics, atomics}, {:fun, fun}, {:set, inner}] = SortedSet.to_list(set)
      assert :atomics.get(atomics, 1) == 42
      assert :atomics.get(fun.(), 1) == 42
      assert SortedSet.to_list(inner) == [42]
    end

    test "items built in bulk, copied or re-added keep their references alive" do
      {bulk, copy} =
        create_and_exit(fn ->
          atomics = :atomics.new(1, [])
          :atomics.put(atomics, 1, 7)
          bulk = SortedSet.from_enumerable([{:a, atomics}, {:a, atomics}, 1])
          copy = SortedSet.copy(SortedSet.from_sorted([{:a, atomics}]))
          {bulk, copy}
        end)

      :erlang.garbage_collect()
      assert [1, {:a, atomics}] = SortedSet.to_list(bulk)
      assert :atomics.get(atomics, 1) == 7
      assert [{:a, copied}] = SortedSet.to_list(copy)
      assert :atomics.get(copied, 1) == 7
    end
  end

  describe "enumeration while another process writes (as :ets.next/2)" do
    # Items that are in the set for the whole enumeration are seen exactly
    # once and in order; items written meanwhile may or may not be seen.
    @stable Enum.map(1..6_000, &(&1 * 4))

    defp churn(write) do
      spawn_link(fn -> churn_loop(write, 0) end)
    end

    # Inserts and deletes items between and before the stable ones, shifting
    # every index the enumeration has not reached.
    defp churn_loop(write, i) do
      write.({:add, -i})
      write.({:add, 4 * rem(i, 6_000) + 1})
      if i > 50, do: write.({:remove, -(i - 50)})
      write.({:remove, 4 * rem(i + 3_000, 6_000) + 1})
      churn_loop(write, i + 1)
    end

    defp assert_each_stable_item_once(seen) do
      assert seen == Enum.sort(seen), "items seen out of order"
      assert seen == Enum.uniq(seen), "an item was seen twice"
      assert Enum.filter(seen, &(&1 > 0 and rem(&1, 4) == 0)) == @stable
    end

    # Enumerates slowly enough that the writer runs between chunks.
    defp slow(item), do: if(rem(item, 500) == 0, do: Process.sleep(1), else: :ok)

    test "Enum.to_list-like reduce sees every untouched item exactly once" do
      set = SortedSet.from_sorted(@stable)

      writer =
        churn(fn
          {:add, item} -> SortedSet.add(set, item)
          {:remove, item} -> SortedSet.remove(set, item)
        end)

      seen = Enum.map(set, fn item -> slow(item) && item end)
      Process.unlink(writer)
      Process.exit(writer, :kill)
      assert_each_stable_item_once(seen)
    end

    test "the same writes over an ETS ordered_set walked with :ets.next/2 (the oracle)" do
      table = :ets.new(:walk, [:ordered_set, :public])
      :ets.insert(table, Enum.map(@stable, &{&1}))

      writer =
        churn(fn
          {:add, item} -> :ets.insert(table, {item})
          {:remove, item} -> :ets.delete(table, item)
        end)

      seen = ets_walk(table, :ets.first(table), [])
      Process.unlink(writer)
      Process.exit(writer, :kill)
      assert_each_stable_item_once(seen)
    end

    defp ets_walk(_table, :"$end_of_table", acc), do: Enum.reverse(acc)

    defp ets_walk(table, key, acc) do
      slow(key)
      ets_walk(table, :ets.next(table, key), [key | acc])
    end
  end

  describe "concurrency" do
    test "many processes read and write one set; the final state is exact" do
      set = SortedSet.new()
      writers = 8
      per_writer = 5_000

      tasks =
        for w <- 1..writers do
          Task.async(fn ->
            for i <- 1..per_writer do
              SortedSet.add(set, {w, i})
              # Remove every third item again; readers run meanwhile.
              if rem(i, 3) == 0, do: SortedSet.remove(set, {w, i})
              _ = SortedSet.find_index(set, {w, div(i, 2)})
            end
          end)
        end

      readers =
        for _ <- 1..2 do
          Task.async(fn ->
            for _ <- 1..50 do
              list = SortedSet.to_list(set)
              assert list == Enum.sort(list)
            end
          end)
        end

      Enum.each(tasks ++ readers, &Task.await(&1, 60_000))

      expected = for w <- 1..writers, i <- 1..per_writer, rem(i, 3) != 0, do: {w, i}
      assert SortedSet.to_list(set) == Enum.sort(expected)
    end

    test "racing writers each get their own result" do
      # Writes on a busy set are combined: one writer applies the others'
      # writes in its turn. Each call must still answer for its own item.
      set = SortedSet.from_enumerable(1..10_000)

      tasks =
        for w <- 1..8 do
          Task.async(fn ->
            for i <- 1..3_000 do
              item = {w, i}
              {added, _} = SortedSet.index_add(set, item)
              {again, _} = SortedSet.index_add(set, item)
              {removed, _} = SortedSet.index_remove(set, item)
              {gone, _} = SortedSet.index_remove(set, item)
              {added, again, removed, gone}
            end
          end)
        end

      # Tuples sort after every integer: each index is past the 10,000.
      for results <- Enum.map(tasks, &Task.await(&1, 60_000)), result <- results do
        assert {added, nil, removed, nil} = result
        assert added >= 10_000 and removed >= 10_000
      end

      assert SortedSet.to_list(set) == Enum.to_list(1..10_000)
    end

    test "writers wait (never fail) while a long read holds the set" do
      set = SortedSet.from_enumerable(1..300_000)
      reader = Task.async(fn -> for _ <- 1..5, do: length(SortedSet.to_list(set)) end)
      writer = Task.async(fn -> for i <- 1..2000, do: SortedSet.index_add(set, -i) end)
      assert Task.await(reader, 60_000) |> Enum.all?(&(&1 >= 300_000))
      assert Task.await(writer, 60_000) |> Enum.all?(&match?({0, _}, &1))
      assert SortedSet.size(set) == 302_000
    end
  end

  describe "differential against the pure twin" do
    # Random operation sequences over random terms of every type; every
    # result of the native set must equal the pure twin's.
    # Mostly a small key space (so adds collide with earlier items, and 1
    # meets 1.0), sometimes any term at all.
    defp item do
      frequency([
        {4, integer(-5, 5)},
        {2, float(-5.0, 5.0)},
        {2, oneof([exactly(1.0), exactly(2.0), exactly(-0.0), exactly(0.0)])},
        {2, oneof([exactly(:a), exactly(:b), exactly("x"), exactly({1, "a", 2}), exactly([1])])},
        {1, any_term()}
      ])
    end

    defp operation do
      oneof([
        tuple([exactly(:add), item()]),
        tuple([exactly(:index_add), item()]),
        tuple([exactly(:remove), item()]),
        tuple([exactly(:index_remove), item()]),
        tuple([exactly(:remove_at), integer(-20, 20)]),
        tuple([exactly(:find_index), item()]),
        tuple([exactly(:lower_bound), item()]),
        tuple([exactly(:member?), item()]),
        tuple([exactly(:at), integer(-20, 20)]),
        tuple([exactly(:slice), integer(0, 20), integer(0, 10)]),
        tuple([exactly(:range), any_term(), item()]),
        exactly(:to_list),
        exactly(:size)
      ])
    end

    defp apply_op(module, set, {name, a}), do: normalize(apply(module, name, [set, a]), set)
    defp apply_op(module, set, {name, a, b}), do: normalize(apply(module, name, [set, a, b]), set)
    defp apply_op(module, set, name), do: {apply(module, name, [set]), set}

    # Results that return the set are split into {observable, set}.
    defp normalize({value, %{__struct__: _} = set}, _), do: {value, set}
    defp normalize(%{__struct__: _} = set, _), do: {:set, set}
    defp normalize(value, set), do: {value, set}

    @tag timeout: 300_000
    property_test "random operation sequences agree with Switchboard.SortedSet.Pure",
      numtests: 300 do
      forall {initial, ops} <- tuple([list(item()), list(operation())]) do
        native = SortedSet.from_enumerable(initial)
        pure = Pure.from_enumerable(initial)

        {agree?, native, pure} =
          Enum.reduce(ops, {true, native, pure}, fn op, {ok, native, pure} ->
            {native_result, native} = apply_op(SortedSet, native, op)
            {pure_result, pure} = apply_op(Pure, pure, op)
            {ok and native_result === pure_result, native, pure}
          end)

        agree? and SortedSet.to_list(native) === Pure.to_list(pure)
      end
    end
  end
end
