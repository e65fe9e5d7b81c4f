defmodule Switchboard.SortedSetTest do
  use ExUnit.Case, async: true
  use Switchboard.Property
  import Bitwise

  alias Switchboard.SortedSet
  alias Switchboard.SortedSet.Pure

  doctest Switchboard.SortedSet

  describe "semantics" do
    test "items of every type sort in Erlang term order" do
      pid = self()
      ref = make_ref()
      port = :erlang.list_to_port(~c"#Port<0.7>")
      fun = &Enum.map/2

      items = [
        "bin",
        <<1::3>>,
        [1, 2],
        [1 | 2],
        [],
        %{a: 1},
        %{1 => 2, 3 => 4},
        {1, 2},
        {0, 0, 0},
        pid,
        port,
        fun,
        ref,
        :atom,
        :日本,
        1.5,
        -3,
        1 <<< 100,
        -(1 <<< 100),
        0.0
      ]

      set = SortedSet.from_enumerable(items)
      assert SortedSet.to_list(set) == Enum.sort(items)
      assert SortedSet.size(set) == length(items)

      for item <- items do
        assert SortedSet.find_index(set, item) ==
                 Enum.find_index(Enum.sort(items), &(&1 === item))
      end
    end

    test "== is equality and the first inserted item is kept" do
      set = SortedSet.new() |> SortedSet.add(1) |> SortedSet.add(1.0)
      assert SortedSet.to_list(set) == [1]
      assert SortedSet.find_index(set, 1.0) == 0
      assert {nil, _} = SortedSet.index_add(set, 1.0)

      set = SortedSet.from_enumerable([2.0, 2, {1.0, :a}, {1, :a}])
      assert SortedSet.to_list(set) === [2.0, {1.0, :a}]

      # 0.0 and -0.0 are == in OTP 25.
      assert SortedSet.to_list(SortedSet.from_enumerable([0.0, -0.0, 0])) === [0.0]
    end

    test "numbers compare exactly across integers, bignums and floats" do
      big = 9_007_199_254_740_993
      set = SortedSet.from_enumerable([big, 9_007_199_254_740_992.0, 1.0e300, 1 <<< 1000])
      assert SortedSet.to_list(set) == [9_007_199_254_740_992.0, big, 1.0e300, 1 <<< 1000]
    end

    test "index_add, index_remove and remove_at report positions" do
      set = SortedSet.from_enumerable([10, 20, 30])
      assert {1, ^set} = SortedSet.index_add(set, 15)
      assert {3, ^set} = SortedSet.index_remove(set, 30)
      assert {nil, ^set} = SortedSet.index_remove(set, 30)
      assert {20, ^set} = SortedSet.remove_at(set, -1)
      assert {nil, ^set} = SortedSet.remove_at(set, 3)
      assert {nil, ^set} = SortedSet.remove_at(set, -4)
      assert {nil, ^set} = SortedSet.remove_at(set, 1 <<< 100)
      assert SortedSet.to_list(set) == [10, 15]
    end

    test "at, slice, range and lower_bound at the edges" do
      set = SortedSet.from_enumerable(1..100)
      assert SortedSet.at(set, 0) == 1
      assert SortedSet.at(set, 99) == 100
      assert SortedSet.at(set, 100) == nil
      assert SortedSet.at(set, -100) == 1
      assert SortedSet.at(set, -101, :none) == :none
      assert SortedSet.at(set, 1 <<< 70, :none) == :none
      assert SortedSet.slice(set, 95, 10) == [96, 97, 98, 99, 100]
      assert SortedSet.slice(set, 0, 0) == []
      assert SortedSet.slice(set, 1 <<< 70, 3) == []
      assert SortedSet.range(set, 10.5, 13) == [11, 12, 13]
      assert SortedSet.range(set, 13, 10) == []
      assert SortedSet.range(set, :a, :b) == []
      assert SortedSet.lower_bound(set, 0) == 0
      assert SortedSet.lower_bound(set, 1000) == 100
      assert SortedSet.lower_bound(set, 50.5) == 50
    end

    test "from_sorted builds in order and refuses unsorted input" do
      assert SortedSet.from_sorted([1, 2, 3]) |> SortedSet.to_list() == [1, 2, 3]

      assert_raise ArgumentError,
                   "from_sorted/2 expects strictly ascending items, got 2 before 2.0",
                   fn -> SortedSet.from_sorted([1, 2, 2.0]) end
    end

    test "copy is independent and clear empties" do
      set = SortedSet.from_enumerable([1, 2, 3])
      copy = SortedSet.copy(set)
      SortedSet.clear(set)
      assert SortedSet.size(set) == 0
      assert SortedSet.to_list(copy) == [1, 2, 3]
    end

    test "memory grows with the items" do
      small = SortedSet.from_enumerable(1..10) |> SortedSet.memory()
      large = SortedSet.from_enumerable(1..100_000) |> SortedSet.memory()
      assert large > small
      # Small integers: well under 48 bytes of native overhead per item.
      assert large / 100_000 < 48
    end
  end

  describe "protocols" do
    test "Enumerable: count, member?, slice and reduce" do
      set = SortedSet.from_enumerable(Enum.shuffle(1..5000))
      assert Enum.count(set) == 5000
      assert Enum.member?(set, 4999.0)
      assert Enum.slice(set, 10, 3) == [11, 12, 13]
      assert Enum.take_every(set, 1000) == [1, 1001, 2001, 3001, 4001]
      assert Enum.sum(set) == div(5000 * 5001, 2)
      assert Enum.take(set, 3) == [1, 2, 3]
      assert Enum.zip(set, [:a, :b]) == [{1, :a}, {2, :b}]
    end

    test "Collectable and Inspect" do
      set = Enum.into([3, 1, 2], SortedSet.new())
      assert SortedSet.to_list(set) == [1, 2, 3]
      assert inspect(set) == "#Switchboard.SortedSet<[1, 2, 3]>"
      big = SortedSet.from_enumerable(1..100)
      assert inspect(big, limit: 3) == "#Switchboard.SortedSet<[1, 2, 3, ...]>"
    end
  end

  describe "bad input" do
    test "a non-set raises ArgumentError naming the term" do
      for fun <- [
            &SortedSet.add(&1, 1),
            &SortedSet.index_add(&1, 1),
            &SortedSet.remove(&1, 1),
            &SortedSet.index_remove(&1, 1),
            &SortedSet.remove_at(&1, 1),
            &SortedSet.find_index(&1, 1),
            &SortedSet.lower_bound(&1, 1),
            &SortedSet.member?(&1, 1),
            &SortedSet.at(&1, 0),
            &SortedSet.slice(&1, 0, 1),
            &SortedSet.range(&1, 0, 1),
            &SortedSet.size/1,
            &SortedSet.to_list/1,
            &SortedSet.clear/1,
            &SortedSet.copy/1,
            &SortedSet.memory/1
          ] do
        assert_raise ArgumentError, "expected a Switchboard.SortedSet, got: %{ref: :nope}", fn ->
          fun.(%{ref: :nope})
        end
      end
    end

    test "a forged struct is refused by the NIF" do
      forged = %SortedSet{ref: make_ref()}

      assert_raise ArgumentError,
                   ~r/^expected a Switchboard.SortedSet reference, got: #Reference</,
                   fn -> SortedSet.size(forged) end
    end

    test "non-integer indexes and bad slice arguments" do
      set = SortedSet.from_enumerable([1])

      assert_raise ArgumentError, "expected an integer index, got: 1.0", fn ->
        SortedSet.at(set, 1.0)
      end

      assert_raise ArgumentError, "expected an integer index, got: :x", fn ->
        SortedSet.remove_at(set, :x)
      end

      assert_raise ArgumentError, "expected a non-negative integer index, got: -1", fn ->
        SortedSet.slice(set, -1, 1)
      end

      assert_raise ArgumentError, "expected an integer amount, got: nil", fn ->
        SortedSet.slice(set, 0, nil)
      end
    end

    test "improper lists and non-enumerables" do
      assert_raise ArgumentError,
                   "expected a proper list of items, got: [1 | 2]",
                   fn ->
                     SortedSet.from_enumerable([1 | 2])
                   end

      assert_raise ArgumentError, "expected an enumerable, got: :atom", fn ->
        SortedSet.from_enumerable(:atom)
      end

      assert_raise ArgumentError,
                   "expected :capacity to be a non-negative integer, got: :big",
                   fn ->
                     SortedSet.new(capacity: :big)
                   end
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
