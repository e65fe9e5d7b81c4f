defmodule Switchboard.Contracts.SortedSetContract do
  @moduledoc false
  # The one test suite of the Switchboard.SortedSet.Behaviour contract, run
  # by both twins:
  #
  #     use Switchboard.Contracts.SortedSetContract, implementation: Switchboard.SortedSet
  #
  # Inside, `Subject` is the implementation. Every test uses the set a
  # function returns, so it holds for a mutable native set and a persistent
  # pure one alike. The optional `:check_structure` is a 1-arity function
  # run on sets the model tests build (the pure twin checks its tree there).
  # Implementation-specific tests stay in each implementation's test file;
  # the model helpers defined here (model_*, step/3, assert_same/1) are
  # available to them.

  defmacro __using__(opts) do
    implementation = Keyword.fetch!(opts, :implementation)
    check = Keyword.get(opts, :check_structure)

    structure_check =
      if check do
        quote do: defp(check_structure(set), do: unquote(check).(set))
      else
        quote do: defp(check_structure(set), do: set)
      end

    quote location: :keep do
      use Switchboard.Property
      import Bitwise, only: [<<<: 2]

      alias unquote(implementation), as: Subject

      # Enough items for three levels of the pure tree.
      @large 20_000

      unquote(structure_check)

      ## The model: a plain sorted list with the same semantics, kept naive
      ## on purpose so that it is obviously right.

      # Sorted, and among items that are == only the first is kept.
      # Enum.sort(_, :asc) is stable, so the first of each run of equals is
      # the first occurrence.
      defp model_new(items), do: items |> Enum.sort(:asc) |> dedup_equal()

      defp dedup_equal([a, b | rest]) when a == b, do: dedup_equal([a | rest])
      defp dedup_equal([a | rest]), do: [a | dedup_equal(rest)]
      defp dedup_equal([]), do: []

      # {index or nil, new model}
      defp model_add(model, item) do
        {below, rest} = Enum.split_while(model, &(&1 < item))

        case rest do
          [equal | _] when equal == item -> {nil, model}
          _ -> {length(below), below ++ [item | rest]}
        end
      end

      defp model_remove(model, item) do
        {below, rest} = Enum.split_while(model, &(&1 < item))

        case rest do
          [equal | rest] when equal == item -> {length(below), below ++ rest}
          _ -> {nil, model}
        end
      end

      defp model_find(model, item), do: Enum.find_index(model, &(&1 == item))
      defp model_lower_bound(model, item), do: Enum.count(model, &(&1 < item))
      defp model_range(model, min, max), do: Enum.filter(model, &(&1 >= min and &1 <= max))

      defp model_at(model, index) do
        size = length(model)
        if index >= -size and index < size, do: Enum.at(model, index), else: nil
      end

      defp large_set(count \\ @large), do: Subject.from_sorted(0..(count - 1))

      # Exact equality: 1 and 1.0 are ==, but the set must keep the first one.
      defp assert_identical(actual, expected), do: assert(actual === expected)

      describe "contract: new/1" do
        test "returns an empty set; :capacity is checked" do
          set = Subject.new()
          assert Subject.size(set) == 0
          assert Subject.to_list(set) == []
          assert Subject.size(Subject.new(capacity: 100)) == 0

          for bad <- [-1, :big, 1.5] do
            assert_raise ArgumentError,
                         "expected :capacity to be a non-negative integer, got: #{inspect(bad)}",
                         fn -> Subject.new(capacity: bad) end
          end
        end
      end

      describe "contract: from_enumerable/2" do
        test "sorts and keeps the first of items that are ==" do
          assert_identical(Subject.to_list(Subject.from_enumerable([3, 1, 2.0, 2, 1.0, 3])), [
            1,
            2.0,
            3
          ])

          assert_identical(Subject.to_list(Subject.from_enumerable([1.0, 1])), [1.0])
          assert_identical(Subject.to_list(Subject.from_enumerable([1, 1.0])), [1])
          assert_identical(Subject.to_list(Subject.from_enumerable([{1}, {1.0}])), [{1}])
          # 0.0 and -0.0 are == in OTP 25.
          assert_identical(Subject.to_list(Subject.from_enumerable([0.0, -0.0, 0])), [0.0])
        end

        test "accepts any enumerable" do
          assert Subject.to_list(Subject.from_enumerable(5..1//-1)) == [1, 2, 3, 4, 5]
          assert Subject.to_list(Subject.from_enumerable(MapSet.new([:b, :a]))) == [:a, :b]
          assert Subject.to_list(Subject.from_enumerable(%{b: 2, a: 1})) == [a: 1, b: 2]
          assert Subject.to_list(Subject.from_enumerable(Stream.map([2, 1], & &1))) == [1, 2]
          assert Subject.to_list(Subject.from_enumerable([])) == []
          assert Subject.to_list(Subject.from_enumerable([], capacity: 10)) == []
        end

        test "sorts any size around node boundaries" do
          for size <- Enum.to_list(0..130) ++ [1_000, 4_095, 4_096, 4_097, @large] do
            set = check_structure(Subject.from_enumerable(Enum.shuffle(1..size//1)))
            assert Subject.to_list(set) == Enum.to_list(1..size//1)
          end
        end

        test "rejects improper lists and non-enumerables, naming them" do
          for bad <- [[1 | 2], [1, 2 | :tail], :atom, 42, "binary", {1, 2}, %URI{}, nil] do
            message = "expected a proper list or an enumerable, got: #{inspect(bad)}"
            assert_raise ArgumentError, message, fn -> Subject.from_enumerable(bad) end
            assert_raise ArgumentError, message, fn -> Subject.from_sorted(bad) end
          end
        end
      end

      describe "contract: from_sorted/2" do
        test "builds from strictly ascending items, like from_enumerable/2" do
          assert Subject.to_list(Subject.from_sorted([1, 2, 3])) == [1, 2, 3]
          assert Subject.to_list(Subject.from_sorted([])) == []
          assert Subject.to_list(Subject.from_sorted(1..3, capacity: 3)) == [1, 2, 3]
          assert Subject.to_list(Subject.from_sorted(Stream.take(1..10, 3))) == [1, 2, 3]

          for size <- [0, 1, 47, 48, 49, 64, 65, 129, 1_537, 1_538, 50_000] do
            items = Enum.to_list(1..size//1)
            assert Subject.to_list(check_structure(Subject.from_sorted(items))) == items
            assert Subject.to_list(Subject.from_enumerable(Enum.reverse(items))) == items
          end
        end

        test "raises on items out of order, naming the pair" do
          for {items, a, b} <- [
                {[0, 2, 1, 3], "2", "1"},
                {[1, 2, 2], "2", "2"},
                # == counts as a duplicate, although the terms differ.
                {[1.0, 1], "1.0", "1"},
                {[1, 2, 2.0], "2", "2.0"},
                {[:a, 1], ":a", "1"}
              ] do
            assert_raise ArgumentError,
                         "from_sorted/2 expects strictly ascending items, got #{a} before #{b}",
                         fn -> Subject.from_sorted(items) end
          end
        end
      end

      describe "contract: add/2 and index_add/2" do
        test "insert in order and report the index" do
          {0, set} = Subject.index_add(Subject.new(), 5)
          {0, set} = Subject.index_add(set, 1)
          {2, set} = Subject.index_add(set, 9)
          {2, set} = Subject.index_add(set, 7)
          assert Subject.to_list(set) == [1, 5, 7, 9]
          assert Subject.to_list(Subject.add(set, 6)) == [1, 5, 6, 7, 9]
        end

        test "an item == to one present leaves the set unchanged, keeping the first" do
          set = Subject.new() |> Subject.add(1) |> Subject.add(1.0)
          assert_identical(Subject.to_list(set), [1])
          assert Subject.index_add(set, 1.0) == {nil, set}
          assert Subject.index_add(set, 1) == {nil, set}
          assert Subject.add(set, 1.0) === set

          set = Subject.new() |> Subject.add(2.0) |> Subject.add(2)
          assert_identical(Subject.to_list(set), [2.0])
        end

        test "ascending, descending and random inserts" do
          items = Enum.to_list(1..@large)

          for order <- [items, Enum.reverse(items), Enum.shuffle(items)] do
            set = Enum.reduce(order, Subject.new(), &Subject.add(&2, &1))
            assert Subject.to_list(check_structure(set)) == items
          end
        end

        test "index_add reports the index across a large set" do
          set = Subject.from_sorted(0..(2 * @large)//2)

          for item <- Enum.take_random(0..(2 * @large), 300) do
            {index, added} = Subject.index_add(set, item + 0.5)
            assert index == div(item, 2) + 1
            assert Subject.at(added, index) == item + 0.5
            # The native set changed in place; the pure one was not touched.
            set = Subject.remove(added, item + 0.5)
            assert Subject.size(set) == @large + 1
          end
        end

        test "numbers compare exactly across integers, bignums and floats" do
          big = 9_007_199_254_740_993
          set = Subject.from_enumerable([big, 9_007_199_254_740_992.0, 1.0e300, 1 <<< 1000])
          assert Subject.to_list(set) == [9_007_199_254_740_992.0, big, 1.0e300, 1 <<< 1000]

          set = Subject.from_enumerable([2, 1.5, 1, -0.5, 10_000_000_000_000_000_000_000, 3.0])
          assert Subject.to_list(set) == [-0.5, 1, 1.5, 2, 3.0, 10_000_000_000_000_000_000_000]
          assert Subject.member?(set, 3)
          assert Subject.find_index(set, 1.0e22) == 5
        end
      end

      describe "contract: remove/2, index_remove/2 and remove_at/2" do
        test "remove by == and report the index before removal" do
          set = Subject.from_sorted([1, 2, 3])
          assert {nil, set} = Subject.index_remove(set, 4)
          assert Subject.remove(set, 4) === set
          assert {1, set} = Subject.index_remove(set, 2.0)
          assert Subject.to_list(set) == [1, 3]
          assert Subject.to_list(Subject.remove(set, 1)) == [3]
        end

        test "on an empty set" do
          empty = Subject.new()
          assert Subject.remove(empty, 1) == empty
          assert Subject.index_remove(empty, 1) == {nil, empty}
          assert Subject.remove_at(empty, 0) == {nil, empty}
          assert Subject.remove_at(empty, -1) == {nil, empty}
        end

        test "remove_at takes positive and negative indices, out of range leaves the set" do
          for {index, item, rest} <- [{0, :a, [:b, :c]}, {-2, :b, [:a, :c]}, {-3, :a, [:b, :c]}] do
            assert {^item, set} = Subject.remove_at(Subject.from_sorted([:a, :b, :c]), index)
            assert Subject.to_list(set) == rest
          end

          set = Subject.from_sorted([:a, :b, :c])

          for index <- [3, -4, 1 <<< 100, -(1 <<< 100)] do
            assert Subject.remove_at(set, index) == {nil, set}
          end

          assert Subject.to_list(set) == [:a, :b, :c]
        end

        test "removing everything in any order, by item and by position" do
          for order <- [0..(@large - 1), (@large - 1)..0//-1, Enum.shuffle(0..(@large - 1))] do
            empty = Enum.reduce(order, large_set(), &Subject.remove(&2, &1))
            assert Subject.size(check_structure(empty)) == 0
            assert Subject.to_list(empty) == []
          end

          {items, empty} =
            Enum.reduce(1..@large, {[], large_set()}, fn step, {items, acc} ->
              index = Enum.at([0, -1, div(Subject.size(acc), 2)], rem(step, 3))
              {item, acc} = Subject.remove_at(acc, index)
              {[item | items], acc}
            end)

          assert Subject.size(check_structure(empty)) == 0
          assert Enum.sort(items) == Enum.to_list(0..(@large - 1))
        end
      end

      describe "contract: find_index/2, lower_bound/2 and member?/2" do
        test "on a small set, with == items" do
          set = Subject.from_sorted([10, 20, 30])
          assert Subject.find_index(set, 20) == 1
          assert Subject.find_index(set, 20.0) == 1
          assert Subject.find_index(set, 25) == nil
          assert Subject.lower_bound(set, 5) == 0
          assert Subject.lower_bound(set, 10.0) == 0
          assert Subject.lower_bound(set, 11) == 1
          assert Subject.lower_bound(set, 30) == 2
          assert Subject.lower_bound(set, 31) == 3
          assert Subject.member?(set, 30.0)
          refute Subject.member?(set, 31)
          assert_identical(Subject.at(set, Subject.find_index(set, 10.0)), 10)
        end

        test "on an empty set" do
          assert Subject.find_index(Subject.new(), 1) == nil
          assert Subject.lower_bound(Subject.new(), 1) == 0
          refute Subject.member?(Subject.new(), 1)
        end

        test "on a large set, for every item and every gap" do
          set = Subject.from_sorted(0..(2 * @large - 2)//2)

          for index <- 0..(@large - 1) do
            assert Subject.find_index(set, 2 * index) == index
            assert Subject.lower_bound(set, 2 * index) == index
            assert Subject.lower_bound(set, 2 * index + 1) == index + 1
            assert Subject.find_index(set, 2 * index + 1) == nil
          end

          assert Subject.lower_bound(set, -1) == 0
          assert Subject.lower_bound(set, :atom) == @large
        end
      end

      describe "contract: at/3, slice/3, slice_after/3 and range/3" do
        test "at takes positive and negative indices, default out of range" do
          set = Subject.from_sorted([:a, :b, :c])
          assert Subject.at(set, 0) == :a
          assert Subject.at(set, 2) == :c
          assert Subject.at(set, -1) == :c
          assert Subject.at(set, -3) == :a
          assert Subject.at(set, -4) == nil
          assert Subject.at(set, 3) == nil
          assert Subject.at(set, 3, :default) == :default
          assert Subject.at(set, 1 <<< 70, :none) == :none
          assert Subject.at(Subject.new(), 0, :default) == :default
          assert Subject.at(Subject.new(), -1) == nil

          large = large_set()

          for index <- 0..(@large - 1) do
            assert Subject.at(large, index) == index
            assert Subject.at(large, index - @large) == index
          end
        end

        test "slice takes a run of items, truncated at the end" do
          set = Subject.from_sorted(1..10)
          assert Subject.slice(set, 0, 3) == [1, 2, 3]
          assert Subject.slice(set, 7, 3) == [8, 9, 10]
          assert Subject.slice(set, 8, 100) == [9, 10]
          assert Subject.slice(set, 10, 1) == []
          assert Subject.slice(set, 100, 1) == []
          assert Subject.slice(set, 1 <<< 70, 3) == []
          assert Subject.slice(set, 3, 0) == []
          assert Subject.slice(Subject.new(), 0, 5) == []

          large = large_set()

          for _ <- 1..300 do
            start = Enum.random(0..(@large + 10))
            amount = Enum.random([0, 1, 2, 63, 64, 65, 500, 5_000, @large])

            assert Subject.slice(large, start, amount) ==
                     Enum.slice(0..(@large - 1), start, amount)
          end
        end

        test "slice_after continues after an item, present or not" do
          set = Subject.from_sorted([1, 2, 3, 5, 8])
          assert Subject.slice_after(set, 2, 2) == [3, 5]
          assert Subject.slice_after(set, 2.0, 10) == [3, 5, 8]
          assert Subject.slice_after(set, 4, 1) == [5]
          assert Subject.slice_after(set, 0, 0) == []
          assert Subject.slice_after(set, 8, 5) == []
          assert Subject.slice_after(set, :atom, 5) == []
          assert Subject.slice_after(Subject.new(), 1, 5) == []

          large = large_set()

          for _ <- 1..200 do
            after_item = Enum.random(-5..(@large + 5)) + Enum.random([0, 0.5])
            amount = Enum.random([0, 1, 64, 1_000])
            expected = 0..(@large - 1) |> Enum.filter(&(&1 > after_item)) |> Enum.take(amount)
            assert Subject.slice_after(large, after_item, amount) == expected
          end
        end

        test "range bounds are inclusive under ==" do
          set = Subject.from_sorted([1, 2, 3, 4, 5])
          assert Subject.range(set, 2, 4) == [2, 3, 4]
          assert Subject.range(set, 2.0, 4.0) == [2, 3, 4]
          assert Subject.range(set, 1.5, 4.5) == [2, 3, 4]
          assert Subject.range(set, 0, 1) == [1]
          assert Subject.range(set, 5, :z) == [5]
          assert Subject.range(set, 3, 3) == [3]
          assert Subject.range(set, 3.5, 3.5) == []
          assert Subject.range(set, 4, 2) == []
          assert Subject.range(set, :a, :b) == []
          assert Subject.range(Subject.new(), 0, 10) == []

          large = large_set()

          for _ <- 1..200 do
            min = Enum.random(-10..(@large + 10))
            max = min + Enum.random(-2..3_000)
            expected = Enum.to_list(max(min, 0)..min(max, @large - 1)//1)
            assert Subject.range(large, min, max) == expected
          end
        end
      end

      describe "contract: size/1, to_list/1, clear/1, copy/1 and memory/1" do
        test "size and to_list" do
          set = Subject.from_enumerable([3, 1, 2])
          assert Subject.size(set) == 3
          assert Subject.to_list(set) == [1, 2, 3]
          assert Subject.size(large_set()) == @large
          assert Subject.to_list(large_set()) == Enum.to_list(0..(@large - 1))
        end

        test "clear empties, a copy keeps the items" do
          set = Subject.from_sorted([1, 2, 3])
          copy = Subject.copy(set)
          assert Subject.size(Subject.clear(set)) == 0
          assert Subject.to_list(copy) == [1, 2, 3]
          assert Subject.to_list(Subject.add(copy, 4)) == [1, 2, 3, 4]
          assert Subject.size(Subject.clear(large_set())) == 0
        end

        test "memory grows with the set" do
          small = Subject.memory(Subject.from_sorted(1..10))
          assert small > 0
          assert Subject.memory(large_set()) > small
        end
      end

      describe "contract: term order" do
        test "numbers < atoms < refs < funs < ports < pids < tuples < maps < [] < lists < bitstrings" do
          expected = [
            -1,
            1.5,
            2,
            1.0e30,
            :a,
            :b,
            make_ref(),
            fn -> :ok end,
            &Enum.map/2,
            :erlang.list_to_port(~c"#Port<0.1>"),
            self(),
            {},
            {0},
            {1, 2},
            {0, 0, 0},
            %{},
            %{a: 1},
            %{1 => 2, 3 => 4},
            [],
            [0],
            [1, 2],
            [1 | 2],
            "",
            "a",
            "bin",
            <<1::1>>,
            <<1::3>>
          ]

          expected = Enum.sort(expected)

          for _ <- 1..20 do
            shuffled = Enum.shuffle(expected)
            assert Subject.to_list(Subject.from_enumerable(shuffled)) == expected
            set = Enum.reduce(shuffled, Subject.new(), &Subject.add(&2, &1))
            assert Subject.to_list(set) == expected
          end

          set = Subject.from_sorted(expected)

          for {item, index} <- Enum.with_index(expected),
              do: assert(Subject.find_index(set, item) == index)
        end
      end

      describe "contract: bad input" do
        @not_sets [nil, [1, 2], %{size: 0}, %{ref: :nope}, MapSet.new([1]), {:set, []}]

        test "a non-set raises ArgumentError naming it, in every function" do
          calls = [
            &Subject.add(&1, 1),
            &Subject.index_add(&1, 1),
            &Subject.remove(&1, 1),
            &Subject.index_remove(&1, 1),
            &Subject.remove_at(&1, 0),
            &Subject.find_index(&1, 1),
            &Subject.lower_bound(&1, 1),
            &Subject.member?(&1, 1),
            &Subject.at(&1, 0),
            &Subject.at(&1, 0, :default),
            &Subject.slice(&1, 0, 1),
            &Subject.slice_after(&1, 0, 1),
            &Subject.range(&1, 0, 1),
            &Subject.size/1,
            &Subject.to_list/1,
            &Subject.clear/1,
            &Subject.copy/1,
            &Subject.memory/1,
            # The set is checked before the index.
            &Subject.at(&1, :bad),
            &Subject.remove_at(&1, :bad),
            &Subject.slice(&1, -1, :bad),
            &Subject.slice_after(&1, 0, :bad)
          ]

          for term <- @not_sets, call <- calls do
            message = "expected a #{inspect(Subject)}, got: #{inspect(term)}"
            assert_raise ArgumentError, message, fn -> call.(term) end
          end
        end

        test "a non-integer or negative index or amount raises ArgumentError naming it" do
          set = Subject.from_sorted([1, 2, 3])

          for index <- [1.0, :first, "0", nil, [0]] do
            message = "expected an integer index, got: #{inspect(index)}"
            assert_raise ArgumentError, message, fn -> Subject.at(set, index) end
            assert_raise ArgumentError, message, fn -> Subject.at(set, index, :default) end
            assert_raise ArgumentError, message, fn -> Subject.remove_at(set, index) end
            assert_raise ArgumentError, message, fn -> Subject.slice(set, index, 1) end
          end

          for {call, message} <- [
                {&Subject.slice(&1, -1, 2), "expected a non-negative integer index, got: -1"},
                {&Subject.slice(&1, 0, -2), "expected a non-negative integer amount, got: -2"},
                {&Subject.slice(&1, 0, :all), "expected an integer amount, got: :all"},
                {&Subject.slice_after(&1, 0, -2),
                 "expected a non-negative integer amount, got: -2"},
                {&Subject.slice_after(&1, 0, nil), "expected an integer amount, got: nil"}
              ] do
            assert_raise ArgumentError, message, fn -> call.(set) end
          end
        end
      end

      describe "contract: Enumerable, Collectable and Inspect" do
        test "count, member? and Enum functions" do
          set = Subject.from_sorted(1..100)
          assert Enum.count(set) == 100
          assert Enum.member?(set, 50.0)
          refute Enum.member?(set, 101)
          assert 7 in set
          assert Enum.to_list(set) == Enum.to_list(1..100)
          assert Enum.map(set, &(&1 * 2)) == Enum.to_list(2..200//2)
          assert Enum.sum(set) == 5050
          assert Enum.reverse(set) == Enum.to_list(100..1//-1)
          assert for(x <- set, rem(x, 10) == 0, do: x) == Enum.to_list(10..100//10)
          assert Enum.to_list(Subject.new()) == []
          assert Enum.count(Subject.new()) == 0
        end

        test "at and slice go through the set" do
          set = Subject.from_sorted(1..100)
          assert Enum.at(set, 0) == 1
          assert Enum.at(set, -1) == 100
          assert Enum.at(set, 100) == nil
          assert Enum.slice(set, 10, 3) == [11, 12, 13]
          assert Enum.slice(set, -3..-1) == [98, 99, 100]
          assert Enum.slice(set, 0..20//5) == [1, 6, 11, 16, 21]
          assert Enum.slice(set, 90..100//4) == [91, 95, 99]
          assert Enum.take_every(set, 30) == [1, 31, 61, 91]
          assert Enum.take(set, -2) == [99, 100]
          assert Enum.fetch(set, 5) == {:ok, 6}
          assert Enum.random(Subject.from_sorted([:only])) == :only
        end

        test "reduce halts and suspends across chunks" do
          set = large_set()
          assert Enum.take(set, 3) == [0, 1, 2]
          assert Enum.take_while(set, &(&1 < 1_000)) == Enum.to_list(0..999)
          assert Enum.find(set, &(&1 > 12_345)) == 12_346

          # Zipping suspends one enumerable while the other advances.
          assert Enum.zip(set, 1..5) == [{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}]
          zipped = Enum.zip(set, large_set())
          assert length(zipped) == @large
          assert Enum.all?(zipped, fn {a, b} -> a == b end)
          assert Stream.zip(Subject.new(), [1]) |> Enum.to_list() == []
        end

        test "into a set sorts, and the set's own items win over == newcomers" do
          set = Enum.into([3, 1.0, 2, 1], Subject.new())
          assert_identical(Subject.to_list(set), [1.0, 2, 3])
          assert Subject.to_list(for x <- 1..5, into: Subject.new(), do: rem(x, 3)) == [0, 1, 2]

          small = Enum.into([2.0], large_set() |> Subject.add(0.5))
          assert_identical(Subject.at(small, 3), 2)
          large = Enum.into([4, 1.0, 3.0, 0, 4.0], Subject.from_sorted([1, 2, 3]))
          assert_identical(Subject.to_list(large), [0, 1, 2, 3, 4])
          grown = Enum.into(Enum.shuffle(@large..(2 * @large)), large_set())
          assert Subject.to_list(check_structure(grown)) == Enum.to_list(0..(2 * @large))
        end

        test "inspect shows items like a list, truncated like a list" do
          name = inspect(Subject)
          assert inspect(Subject.new()) == "##{name}<[]>"
          assert inspect(Subject.from_sorted([1, 2, 3])) == "##{name}<[1, 2, 3]>"
          assert inspect(Subject.from_sorted([~c"ab"])) == "##{name}<[[97, 98]]>"

          set = large_set()
          list = Enum.to_list(0..(@large - 1))

          for opts <- [[], [limit: 3], [limit: 0], [limit: 50]] do
            assert inspect(set, opts) == "##{name}<#{inspect(list, opts)}>"
          end

          assert inspect(Subject.from_sorted(1..5), limit: :infinity) =~ "[1, 2, 3, 4, 5]"
        end
      end

      describe "contract: against the model" do
        # Integers and their float twins, so == matters; a key space twice
        # the target size keeps about half the adds and removes hitting.
        defp random_key(space) do
          key = :rand.uniform(space) - 1
          if :rand.uniform(4) == 1, do: key * 1.0, else: key
        end

        @operations [
          :add,
          :index_add,
          :remove,
          :index_remove,
          :remove_at,
          :find_index,
          :lower_bound,
          :at,
          :slice,
          :range
        ]

        # The set and the model after one random operation (adds weighted by
        # `add_weight`); asserts they agree.
        defp step({set, model}, space, add_weight) do
          n = :rand.uniform(10 + add_weight)
          op = if n > 10, do: :add, else: Enum.at(@operations, n - 1)
          apply_step(op, set, model, random_key(space), space)
        end

        defp apply_step(:add, set, model, key, _space) do
          {_, model} = model_add(model, key)
          {Subject.add(set, key), model}
        end

        defp apply_step(:index_add, set, model, key, _space) do
          {index, model} = model_add(model, key)
          {actual, set} = Subject.index_add(set, key)
          assert actual == index, "index_add(#{inspect(key)})"
          {set, model}
        end

        defp apply_step(:remove, set, model, key, _space) do
          {_, model} = model_remove(model, key)
          {Subject.remove(set, key), model}
        end

        defp apply_step(:index_remove, set, model, key, _space) do
          {index, model} = model_remove(model, key)
          {actual, set} = Subject.index_remove(set, key)
          assert actual == index, "index_remove(#{inspect(key)})"
          {set, model}
        end

        defp apply_step(:remove_at, set, model, _key, _space) do
          size = length(model)
          index = Enum.random((-size - 2)..(size + 1))
          {item, set} = Subject.remove_at(set, index)
          assert item === model_at(model, index), "remove_at(#{index})"
          in_range? = index >= -size and index < size
          {set, if(in_range?, do: List.delete_at(model, index), else: model)}
        end

        defp apply_step(:find_index, set, model, key, _space) do
          assert Subject.find_index(set, key) == model_find(model, key)
          assert Subject.member?(set, key) == (model_find(model, key) != nil)
          {set, model}
        end

        defp apply_step(:lower_bound, set, model, key, _space) do
          assert Subject.lower_bound(set, key) == model_lower_bound(model, key)
          {set, model}
        end

        defp apply_step(:at, set, model, _key, _space) do
          size = length(model)
          index = Enum.random((-size - 2)..(size + 1))
          assert Subject.at(set, index, :none) === (model_at(model, index) || :none)
          {set, model}
        end

        defp apply_step(:slice, set, model, _key, _space) do
          start = Enum.random(0..(length(model) + 1))
          amount = Enum.random(0..200)
          assert Subject.slice(set, start, amount) === Enum.slice(model, start, amount)
          {set, model}
        end

        defp apply_step(:range, set, model, _key, space) do
          min = random_key(space)
          max = min + Enum.random(-5..300)
          assert Subject.range(set, min, max) === model_range(model, min, max)
          {set, model}
        end

        defp assert_same({set, model}) do
          assert Subject.size(set) == length(model)
          assert Subject.to_list(set) === model
          check_structure(set)
        end

        @tag timeout: 300_000
        test "thousands of random operations at #{@large} items" do
          :rand.seed(:exsss, {101, 202, 303})
          space = 2 * @large
          initial = for _ <- 1..@large, do: random_key(space)
          state = {Subject.from_enumerable(initial), model_new(initial)}
          assert_same(state)

          state =
            Enum.reduce(1..4_000, state, fn i, state ->
              state = step(state, space, 0)
              if rem(i, 500) == 0, do: assert_same(state)
              state
            end)

          assert_same(state)
        end
      end

      describe "contract: properties" do
        # Any term, weighted towards a few numbers and tuples that collide
        # under == (1 and 1.0, {1} and {1.0}); any_term() alone almost never
        # repeats.
        defp contract_item do
          number = oneof([integer(-3, 3), :proper_types.bind(integer(-3, 3), &(&1 * 1.0), false)])
          frequency([{4, number}, {1, tuple([number])}, {2, resize(4, any_term())}])
        end

        property_test "from_enumerable/2 sorts and dedups any terms like the model",
          numtests: 150 do
          forall items <- list(contract_item()) do
            set = Subject.from_enumerable(items)
            model = model_new(items)
            Subject.to_list(set) === model and Subject.size(set) == length(model)
          end
        end

        property_test "adding one by one equals building in bulk, with matching indices",
          numtests: 300 do
          forall items <- list(contract_item()) do
            {indices, set} =
              Enum.map_reduce(items, Subject.new(), fn item, set ->
                Subject.index_add(set, item)
              end)

            {expected_indices, model} =
              Enum.map_reduce(items, [], fn item, model -> model_add(model, item) end)

            indices == expected_indices and Subject.to_list(set) === model and
              Subject.to_list(Subject.from_enumerable(items)) === model and
              Enum.all?(items, &(Subject.find_index(set, &1) == model_find(model, &1)))
          end
        end

        property_test "removals and queries agree with the model for any terms", numtests: 100 do
          forall {items, removals} <- {list(contract_item()), list(contract_item())} do
            set = Subject.from_enumerable(items)
            model = model_new(items)

            {set, model, agreed} =
              Enum.reduce(removals ++ Enum.take(items, 5), {set, model, true}, fn item,
                                                                                  {set, model,
                                                                                   agreed} ->
                {expected, model} = model_remove(model, item)
                {actual, set} = Subject.index_remove(set, item)
                {set, model, agreed and actual == expected}
              end)

            agreed and Subject.to_list(set) === model and
              Enum.with_index(model) |> Enum.all?(fn {item, i} -> Subject.at(set, i) === item end)
          end
        end
      end
    end
  end
end
