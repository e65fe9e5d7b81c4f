defmodule Switchboard.SortedSet.PureTest do
  use ExUnit.Case, async: true
  use Switchboard.Property

  alias Switchboard.SortedSet.Pure

  doctest Switchboard.SortedSet.Pure

  # Enough items for three levels: leaves, inner nodes and a root above them.
  @large 20_000

  ## The model: a plain sorted list with the same semantics, kept naive on
  ## purpose so that it is obviously right.

  # Sorted, and among items that are == only the first in `items` is kept.
  # Enum.sort(_, :asc) is stable, so the first of each run of equals is the
  # first occurrence.
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

  ## Structural invariants, checked from outside. This knows the private
  ## layout (a leaf is a tuple of items, an inner node is
  ## {separators, children, sizes}) on purpose: the model cannot see a tree
  ## that answers correctly but is malformed.

  defp assert_valid(%Pure{size: size, height: height, root: root} = set) do
    {count, _first, _last} = check_node(root, height, true)
    assert count == size
    assert Pure.size(set) == size
    set
  end

  defp check_node(leaf, 0, root?) do
    items = Tuple.to_list(leaf)
    assert root? or items != [], "empty non-root leaf"
    assert_strictly_ascending(items)
    {length(items), List.first(items), List.last(items)}
  end

  defp check_node({separators, children, sizes}, height, _root?) do
    count = tuple_size(children)
    assert count >= 2, "inner node with #{count} children"
    assert tuple_size(separators) == count - 1
    assert tuple_size(sizes) == count

    summaries =
      for i <- 0..(count - 1) do
        {child_count, first, last} = check_node(elem(children, i), height - 1, false)
        assert child_count == elem(sizes, i), "cached size is wrong"
        {child_count, first, last}
      end

    # Separator j divides child j (all < it) from child j + 1 (all >= it).
    for j <- 0..(count - 2) do
      separator = elem(separators, j)
      {_, _, left_last} = Enum.at(summaries, j)
      {_, right_first, _} = Enum.at(summaries, j + 1)
      assert left_last < separator
      refute right_first < separator
    end

    {_, first, _} = hd(summaries)
    {_, _, last} = List.last(summaries)
    {summaries |> Enum.map(&elem(&1, 0)) |> Enum.sum(), first, last}
  end

  defp assert_strictly_ascending([a, b | rest]) do
    assert a < b, "#{inspect(a)} before #{inspect(b)}"
    assert_strictly_ascending([b | rest])
  end

  defp assert_strictly_ascending(_items), do: :ok

  defp large_set(count \\ @large), do: Pure.from_sorted(0..(count - 1))

  # Exact equality: 1 and 1.0 are ==, but the set must keep the first one.
  defp assert_identical(actual, expected) do
    assert actual === expected
  end

  describe "new/1" do
    test "returns an empty set" do
      set = Pure.new()
      assert Pure.size(set) == 0
      assert Pure.to_list(set) == []
      assert Pure.new(capacity: 100) == set
    end
  end

  describe "from_enumerable/2" do
    test "sorts and keeps the first of items that are ==" do
      assert_identical(Pure.to_list(Pure.from_enumerable([3, 1, 2.0, 2, 1.0, 3])), [1, 2.0, 3])
      assert_identical(Pure.to_list(Pure.from_enumerable([1.0, 1])), [1.0])
      assert_identical(Pure.to_list(Pure.from_enumerable([1, 1.0])), [1])
      assert_identical(Pure.to_list(Pure.from_enumerable([{1}, {1.0}])), [{1}])
    end

    test "accepts any enumerable" do
      assert Pure.to_list(Pure.from_enumerable(5..1//-1)) == [1, 2, 3, 4, 5]
      assert Pure.to_list(Pure.from_enumerable(MapSet.new([:b, :a]))) == [:a, :b]
      assert Pure.to_list(Pure.from_enumerable(%{b: 2, a: 1})) == [a: 1, b: 2]
      assert Pure.to_list(Pure.from_enumerable(Stream.map([2, 1], & &1))) == [1, 2]
      assert Pure.to_list(Pure.from_enumerable([])) == []
      assert Pure.to_list(Pure.from_enumerable([], capacity: 10)) == []
    end

    test "returns a set given as is" do
      set = Pure.from_enumerable([2, 1])
      assert Pure.from_enumerable(set) == set
    end

    test "builds a valid tree at every size around node boundaries" do
      for size <- Enum.to_list(0..300) ++ [1_000, 4_095, 4_096, 4_097, @large] do
        items = Enum.shuffle(1..size//1)
        set = assert_valid(Pure.from_enumerable(items))
        assert Pure.to_list(set) == Enum.to_list(1..size//1)
      end
    end

    test "rejects improper lists and non-enumerables, naming them" do
      for bad <- [[1 | 2], [1, 2 | :tail], :atom, 42, "binary", {1, 2}, %URI{}] do
        message = "expected a proper list or an enumerable, got: #{inspect(bad)}"
        assert_raise ArgumentError, message, fn -> Pure.from_enumerable(bad) end
      end
    end
  end

  describe "from_sorted/2" do
    test "builds from strictly ascending items" do
      assert Pure.to_list(Pure.from_sorted([1, 2, 3])) == [1, 2, 3]
      assert Pure.to_list(Pure.from_sorted([])) == []
      assert Pure.to_list(Pure.from_sorted(1..3, capacity: 3)) == [1, 2, 3]
      assert Pure.to_list(Pure.from_sorted(Stream.take(1..10, 3))) == [1, 2, 3]
    end

    test "matches from_enumerable/2 and is a valid tree" do
      for size <- [0, 1, 47, 48, 49, 64, 65, 129, 1_537, 1_538, 50_000] do
        items = Enum.to_list(1..size//1)
        set = assert_valid(Pure.from_sorted(items))
        assert Pure.to_list(set) == items
        assert Pure.to_list(Pure.from_enumerable(Enum.reverse(items))) == items
      end
    end

    test "raises on items out of order, naming the pair" do
      assert_raise ArgumentError,
                   "from_sorted/2 expects strictly ascending items, got 2 before 1",
                   fn -> Pure.from_sorted([0, 2, 1, 3]) end

      assert_raise ArgumentError,
                   "from_sorted/2 expects strictly ascending items, got 2 before 2",
                   fn -> Pure.from_sorted([1, 2, 2]) end

      # == counts as a duplicate, although the terms differ.
      assert_raise ArgumentError,
                   "from_sorted/2 expects strictly ascending items, got 1.0 before 1",
                   fn -> Pure.from_sorted([1.0, 1]) end

      assert_raise ArgumentError,
                   "from_sorted/2 expects strictly ascending items, got :a before 1",
                   fn -> Pure.from_sorted([:a, 1]) end
    end

    test "rejects improper lists and non-enumerables" do
      assert_raise ArgumentError, "expected a proper list or an enumerable, got: [1 | 2]", fn ->
        Pure.from_sorted([1 | 2])
      end

      assert_raise ArgumentError, "expected a proper list or an enumerable, got: nil", fn ->
        Pure.from_sorted(nil)
      end
    end
  end

  describe "add/2 and index_add/2" do
    test "insert in order and report the index" do
      {0, set} = Pure.index_add(Pure.new(), 5)
      {0, set} = Pure.index_add(set, 1)
      {2, set} = Pure.index_add(set, 9)
      {2, set} = Pure.index_add(set, 7)
      assert Pure.to_list(set) == [1, 5, 7, 9]
      assert Pure.to_list(Pure.add(set, 6)) == [1, 5, 6, 7, 9]
    end

    test "an item == to one present leaves the set unchanged, keeping the first" do
      set = Pure.new() |> Pure.add(1) |> Pure.add(1.0)
      assert_identical(Pure.to_list(set), [1])
      assert Pure.index_add(set, 1.0) == {nil, set}
      assert Pure.index_add(set, 1) == {nil, set}
      assert Pure.add(set, 1.0) === set

      set = Pure.new() |> Pure.add(2.0) |> Pure.add(2)
      assert_identical(Pure.to_list(set), [2.0])
    end

    test "ascending, descending and random inserts build valid trees" do
      items = Enum.to_list(1..@large)

      for order <- [items, Enum.reverse(items), Enum.shuffle(items)] do
        set = Enum.reduce(order, Pure.new(), &Pure.add(&2, &1))
        assert_valid(set)
        assert Pure.to_list(set) == items
      end
    end

    test "index_add reports the index across a large set" do
      set = Pure.from_sorted(0..(2 * @large)//2)

      for item <- Enum.take_random(0..(2 * @large), 500) do
        {index, added} = Pure.index_add(set, item + 0.5)
        assert index == div(item, 2) + 1
        assert Pure.at(added, index) == item + 0.5
      end
    end
  end

  describe "remove/2 and index_remove/2" do
    test "remove by == and report the index before removal" do
      set = Pure.from_sorted([1, 2, 3])
      assert {1, rest} = Pure.index_remove(set, 2.0)
      assert Pure.to_list(rest) == [1, 3]
      assert Pure.index_remove(set, 4) == {nil, set}
      assert Pure.remove(set, 4) === set
      assert Pure.to_list(Pure.remove(set, 1)) == [2, 3]
    end

    test "on an empty set" do
      assert Pure.remove(Pure.new(), 1) == Pure.new()
      assert Pure.index_remove(Pure.new(), 1) == {nil, Pure.new()}
    end

    test "removing everything in any order keeps the tree valid down to empty" do
      set = large_set()

      for order <- [0..(@large - 1), (@large - 1)..0//-1, Enum.shuffle(0..(@large - 1))] do
        empty =
          order
          |> Enum.with_index()
          |> Enum.reduce(set, fn {item, step}, acc ->
            acc = Pure.remove(acc, item)
            if rem(step, 997) == 0, do: assert_valid(acc)
            acc
          end)

        assert_valid(empty)
        assert Pure.size(empty) == 0
        assert Pure.to_list(empty) == []
      end
    end

    test "punching holes into a randomly grown set keeps the tree valid" do
      # Random inserts leave nodes anywhere from half to completely full.
      # Emptying a run of keys underflows the nodes at its edges, which then
      # join a neighbour: merging with it, or splitting evenly if it is full.
      :rand.seed(:exsss, {2, 7, 1})
      count = 2 * @large
      keys = Enum.shuffle(0..(count - 1))
      set = Enum.reduce(keys, Pure.new(), &Pure.add(&2, &1))

      Enum.reduce(1..20, {set, MapSet.new(keys)}, fn _hole, {set, remaining} ->
        first = :rand.uniform(count) - 1
        hole = Enum.shuffle(first..min(first + Enum.random(100..3_000), count - 1))
        set = Enum.reduce(hole, set, &Pure.remove(&2, &1))
        remaining = Enum.reduce(hole, remaining, &MapSet.delete(&2, &1))
        assert_valid(set)
        assert Pure.to_list(set) == Enum.sort(remaining)
        {set, remaining}
      end)
    end

    test "shrinking regions next to growing ones keep the tree valid" do
      # Alternate blocks of keys grow and shrink, so nodes that underflow sit
      # next to nearly full ones: joining them must split evenly, not merge.
      # Small blocks do it to leaves, large ones to inner nodes.
      :rand.seed(:exsss, {3, 1, 4})
      state = {large_set(), MapSet.new(0..(@large - 1))}

      {set, model} =
        for {block, steps} <- [{200, 6_000}, {2_500, 8_000}], step <- 1..steps, reduce: state do
          {set, model} ->
            growing = 2 * block * (:rand.uniform(div(@large, 2 * block)) - 1)
            # Never integral, so never == to an integer key.
            added = growing + :rand.uniform(block) - 0.75 + :rand.uniform() / 2
            {index, set} = Pure.index_add(set, added)
            assert index == nil or Pure.at(set, index) === added
            removed = for _ <- 1..2, do: growing + block + :rand.uniform(block) - 1
            set = Enum.reduce(removed, set, &Pure.remove(&2, &1))
            model = Enum.reduce(removed, MapSet.put(model, added), &MapSet.delete(&2, &1))

            if rem(step, 2_000) == 0 do
              assert_valid(set)
              assert Pure.to_list(set) == Enum.sort(model)
            end

            {set, model}
        end

      assert Pure.to_list(set) == Enum.sort(model)
    end
  end

  describe "remove_at/2" do
    test "positive and negative indices" do
      set = Pure.from_sorted([:a, :b, :c])
      assert {:a, rest} = Pure.remove_at(set, 0)
      assert Pure.to_list(rest) == [:b, :c]
      assert {:b, rest} = Pure.remove_at(set, -2)
      assert Pure.to_list(rest) == [:a, :c]
      assert {:a, _} = Pure.remove_at(set, -3)
    end

    test "out of range leaves the set unchanged" do
      set = Pure.from_sorted([:a, :b, :c])
      assert Pure.remove_at(set, 3) == {nil, set}
      assert Pure.remove_at(set, -4) == {nil, set}
      assert Pure.remove_at(Pure.new(), 0) == {nil, Pure.new()}
      assert Pure.remove_at(Pure.new(), -1) == {nil, Pure.new()}
    end

    test "empties a large set from both ends and the middle" do
      set = large_set()

      {items, empty} =
        Enum.reduce(1..@large, {[], set}, fn step, {items, acc} ->
          index = Enum.at([0, -1, div(Pure.size(acc), 2)], rem(step, 3))
          {item, acc} = Pure.remove_at(acc, index)
          {[item | items], acc}
        end)

      assert_valid(empty)
      assert Pure.size(empty) == 0
      assert Enum.sort(items) == Enum.to_list(0..(@large - 1))
    end
  end

  describe "find_index/2, lower_bound/2 and member?/2" do
    test "on a small set, with == items" do
      set = Pure.from_sorted([10, 20, 30])
      assert Pure.find_index(set, 20) == 1
      assert Pure.find_index(set, 20.0) == 1
      assert Pure.find_index(set, 25) == nil
      assert Pure.lower_bound(set, 5) == 0
      assert Pure.lower_bound(set, 10.0) == 0
      assert Pure.lower_bound(set, 11) == 1
      assert Pure.lower_bound(set, 30) == 2
      assert Pure.lower_bound(set, 31) == 3
      assert Pure.member?(set, 30.0)
      refute Pure.member?(set, 31)
    end

    test "on an empty set" do
      assert Pure.find_index(Pure.new(), 1) == nil
      assert Pure.lower_bound(Pure.new(), 1) == 0
      refute Pure.member?(Pure.new(), 1)
    end

    test "find the item 1 when asked for 1.0" do
      set = Pure.from_enumerable([0, 1, 2])
      assert Pure.find_index(set, 1.0) == 1
      assert_identical(Pure.at(set, Pure.find_index(set, 1.0)), 1)
    end

    test "on a large set, for every item and every gap" do
      set = Pure.from_sorted(0..(2 * @large - 2)//2)

      for index <- 0..(@large - 1) do
        assert Pure.find_index(set, 2 * index) == index
        assert Pure.lower_bound(set, 2 * index) == index
        assert Pure.lower_bound(set, 2 * index + 1) == index + 1
        assert Pure.find_index(set, 2 * index + 1) == nil
      end

      assert Pure.lower_bound(set, -1) == 0
      assert Pure.lower_bound(set, :atom) == @large
    end
  end

  describe "at/3" do
    test "positive and negative indices, default out of range" do
      set = Pure.from_sorted([:a, :b, :c])
      assert Pure.at(set, 0) == :a
      assert Pure.at(set, 2) == :c
      assert Pure.at(set, -1) == :c
      assert Pure.at(set, -3) == :a
      assert Pure.at(set, -4) == nil
      assert Pure.at(set, 3) == nil
      assert Pure.at(set, 3, :default) == :default
      assert Pure.at(Pure.new(), 0, :default) == :default
      assert Pure.at(Pure.new(), -1) == nil
    end

    test "every index of a large set" do
      set = large_set()

      for index <- 0..(@large - 1) do
        assert Pure.at(set, index) == index
        assert Pure.at(set, index - @large) == index
      end
    end
  end

  describe "slice/3" do
    test "takes a run of items, truncated at the end" do
      set = Pure.from_sorted(1..10)
      assert Pure.slice(set, 0, 3) == [1, 2, 3]
      assert Pure.slice(set, 7, 3) == [8, 9, 10]
      assert Pure.slice(set, 8, 100) == [9, 10]
      assert Pure.slice(set, 10, 1) == []
      assert Pure.slice(set, 100, 1) == []
      assert Pure.slice(set, 3, 0) == []
      assert Pure.slice(Pure.new(), 0, 5) == []
    end

    test "across leaves of a large set" do
      set = large_set()

      for _ <- 1..300 do
        start = Enum.random(0..(@large + 10))
        amount = Enum.random([0, 1, 2, 63, 64, 65, 500, 5_000, @large])
        assert Pure.slice(set, start, amount) == Enum.slice(0..(@large - 1), start, amount)
      end

      assert Pure.slice(set, 0, @large) == Enum.to_list(0..(@large - 1))
    end

    test "rejects negative and non-integer start and amount" do
      set = Pure.from_sorted(1..10)

      assert_raise ArgumentError, "expected a non-negative integer index, got: -1", fn ->
        Pure.slice(set, -1, 2)
      end

      assert_raise ArgumentError, "expected an integer index, got: 1.5", fn ->
        Pure.slice(set, 1.5, 2)
      end

      assert_raise ArgumentError, "expected a non-negative integer amount, got: -2", fn ->
        Pure.slice(set, 0, -2)
      end

      assert_raise ArgumentError, "expected an integer amount, got: :all", fn ->
        Pure.slice(set, 0, :all)
      end
    end
  end

  describe "range/3" do
    test "bounds are inclusive under ==" do
      set = Pure.from_sorted([1, 2, 3, 4, 5])
      assert Pure.range(set, 2, 4) == [2, 3, 4]
      assert Pure.range(set, 2.0, 4.0) == [2, 3, 4]
      assert Pure.range(set, 1.5, 4.5) == [2, 3, 4]
      assert Pure.range(set, 0, 1) == [1]
      assert Pure.range(set, 5, :z) == [5]
      assert Pure.range(set, 3, 3) == [3]
      assert Pure.range(set, 3.5, 3.5) == []
      assert Pure.range(set, 4, 2) == []
      assert Pure.range(set, :a, :b) == []
      assert Pure.range(Pure.new(), 0, 10) == []
    end

    test "on a large set" do
      set = large_set()

      for _ <- 1..200 do
        min = Enum.random(-10..(@large + 10))
        max = min + Enum.random(-2..3_000)
        assert Pure.range(set, min, max) == Enum.to_list(max(min, 0)..min(max, @large - 1)//1)
      end
    end
  end

  describe "size/1, to_list/1, clear/1, copy/1 and memory/1" do
    test "size and to_list" do
      set = Pure.from_enumerable([3, 1, 2])
      assert Pure.size(set) == 3
      assert Pure.to_list(set) == [1, 2, 3]
      assert Pure.size(large_set()) == @large
      assert Pure.to_list(large_set()) == Enum.to_list(0..(@large - 1))
    end

    test "clear returns an empty set" do
      assert Pure.clear(large_set()) == Pure.new()
      assert Pure.size(Pure.clear(Pure.from_sorted([1]))) == 0
    end

    test "copy returns the same value" do
      set = large_set()
      assert Pure.copy(set) === set
    end

    test "memory grows with the set and is per item what tuples cost" do
      word = :erlang.system_info(:wordsize)
      assert Pure.memory(Pure.new()) > 0
      bytes = Pure.memory(large_set())
      # Small integers are one word each, plus tuple headers and inner nodes.
      assert bytes > @large * word
      assert bytes < 2 * @large * word
    end
  end

  describe "term order" do
    test "mixed types sort as numbers < atoms < refs < funs < ports < pids < tuples < maps < [] < lists < bitstrings" do
      ref = make_ref()
      fun = fn -> :ok end
      port = :erlang.list_to_port(~c"#Port<0.1>")
      pid = self()

      expected = [
        -1,
        1.5,
        2,
        1.0e30,
        :a,
        :b,
        ref,
        fun,
        port,
        pid,
        {},
        {0},
        {1, 2},
        %{},
        %{a: 1},
        [],
        [0],
        [1, 2],
        "",
        "a",
        <<1::1>>
      ]

      for _ <- 1..20 do
        shuffled = Enum.shuffle(expected)
        assert Pure.to_list(Pure.from_enumerable(shuffled)) == expected
        assert Pure.to_list(Enum.reduce(shuffled, Pure.new(), &Pure.add(&2, &1))) == expected
      end

      set = Pure.from_sorted(expected)

      for {item, index} <- Enum.with_index(expected),
          do: assert(Pure.find_index(set, item) == index)
    end

    test "numbers compare by value across integers and floats" do
      set = Pure.from_enumerable([2, 1.5, 1, -0.5, 10_000_000_000_000_000_000_000, 3.0])
      assert Pure.to_list(set) == [-0.5, 1, 1.5, 2, 3.0, 10_000_000_000_000_000_000_000]
      assert Pure.member?(set, 3)
      assert Pure.find_index(set, 1.0e22) == 5
    end
  end

  describe "bad input" do
    @not_sets [nil, [1, 2], %{size: 0}, MapSet.new([1]), {:set, []}]

    test "a non-set raises ArgumentError naming it, in every function" do
      calls = [
        &Pure.add(&1, 1),
        &Pure.index_add(&1, 1),
        &Pure.remove(&1, 1),
        &Pure.index_remove(&1, 1),
        &Pure.remove_at(&1, 0),
        &Pure.find_index(&1, 1),
        &Pure.lower_bound(&1, 1),
        &Pure.member?(&1, 1),
        &Pure.at(&1, 0),
        &Pure.at(&1, 0, :default),
        &Pure.slice(&1, 0, 1),
        &Pure.range(&1, 0, 1),
        &Pure.size/1,
        &Pure.to_list/1,
        &Pure.clear/1,
        &Pure.copy/1,
        &Pure.memory/1,
        # The set is checked before the index.
        &Pure.at(&1, :bad),
        &Pure.remove_at(&1, :bad),
        &Pure.slice(&1, -1, :bad)
      ]

      for term <- @not_sets, call <- calls do
        message = "expected a Switchboard.SortedSet.Pure, got: #{inspect(term)}"
        assert_raise ArgumentError, message, fn -> call.(term) end
      end
    end

    test "a non-integer index raises ArgumentError naming it" do
      set = Pure.from_sorted([1, 2, 3])

      for index <- [1.0, :first, "0", nil, [0]] do
        message = "expected an integer index, got: #{inspect(index)}"
        assert_raise ArgumentError, message, fn -> Pure.at(set, index) end
        assert_raise ArgumentError, message, fn -> Pure.at(set, index, :default) end
        assert_raise ArgumentError, message, fn -> Pure.remove_at(set, index) end
        assert_raise ArgumentError, message, fn -> Pure.slice(set, index, 1) end
      end
    end
  end

  describe "Enumerable" do
    test "count, member? and Enum functions" do
      set = Pure.from_sorted(1..100)
      assert Enum.count(set) == 100
      assert Enum.member?(set, 50.0)
      refute Enum.member?(set, 101)
      assert 7 in set
      assert Enum.to_list(set) == Enum.to_list(1..100)
      assert Enum.map(set, &(&1 * 2)) == Enum.to_list(2..200//2)
      assert Enum.sum(set) == 5050
      assert Enum.reverse(set) == Enum.to_list(100..1//-1)
      assert for(x <- set, rem(x, 10) == 0, do: x) == Enum.to_list(10..100//10)
      assert Enum.to_list(Pure.new()) == []
      assert Enum.count(Pure.new()) == 0
    end

    test "at and slice go through the set" do
      set = Pure.from_sorted(1..100)
      assert Enum.at(set, 0) == 1
      assert Enum.at(set, -1) == 100
      assert Enum.at(set, 100) == nil
      assert Enum.slice(set, 10, 3) == [11, 12, 13]
      assert Enum.slice(set, -3..-1) == [98, 99, 100]
      assert Enum.slice(set, 0..20//5) == [1, 6, 11, 16, 21]
      assert Enum.slice(set, 90..100//4) == [91, 95, 99]
      assert Enum.take(set, -2) == [99, 100]
      assert Enum.fetch(set, 5) == {:ok, 6}
      assert Enum.random(Pure.from_sorted([:only])) == :only
    end

    test "reduce halts and suspends across leaves" do
      set = large_set()
      assert Enum.take(set, 3) == [0, 1, 2]
      assert Enum.take_while(set, &(&1 < 1_000)) == Enum.to_list(0..999)
      assert Enum.find(set, &(&1 > 12_345)) == 12_346

      # Zipping suspends one enumerable while the other advances.
      assert Enum.zip(set, 1..5) == [{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}]
      zipped = Enum.zip(set, large_set())
      assert length(zipped) == @large
      assert Enum.all?(zipped, fn {a, b} -> a == b end)
      assert Stream.zip(Pure.new(), [1]) |> Enum.to_list() == []
    end
  end

  describe "Collectable" do
    test "into an empty set sorts and keeps the first of == items" do
      set = Enum.into([3, 1.0, 2, 1], Pure.new())
      assert_identical(Pure.to_list(set), [1.0, 2, 3])
      assert Pure.to_list(for x <- 1..5, into: Pure.new(), do: rem(x, 3)) == [0, 1, 2]
    end

    test "the set's own items win over == newcomers, in small and large batches" do
      set = Pure.from_sorted([1, 2, 3])
      # A batch small next to the set (added one by one) ...
      small = Enum.into([2.0], large_set() |> Pure.add(0.5))
      assert_identical(Pure.at(small, 3), 2)
      # ... and a large one (merged in bulk).
      large = Enum.into([4, 1.0, 3.0, 0, 4.0], set)
      assert_identical(Pure.to_list(large), [0, 1, 2, 3, 4])
      assert_valid(Enum.into(Enum.shuffle(@large..(2 * @large)), large_set()))
    end
  end

  describe "Inspect" do
    test "shows items like a list" do
      assert inspect(Pure.new()) == "#Switchboard.SortedSet.Pure<[]>"
      assert inspect(Pure.from_sorted([1, 2, 3])) == "#Switchboard.SortedSet.Pure<[1, 2, 3]>"
      assert inspect(Pure.from_sorted([~c"ab"])) == "#Switchboard.SortedSet.Pure<[[97, 98]]>"
    end

    test "truncates long sets like a list, without listing all items" do
      set = large_set()
      list = Enum.to_list(0..(@large - 1))

      for opts <- [[], [limit: 3], [limit: 0], [limit: 50]] do
        assert inspect(set, opts) == "#Switchboard.SortedSet.Pure<#{inspect(list, opts)}>"
      end

      assert inspect(set) =~ ~r/<\[0, 1, .*, 49, \.\.\.\]>$/
      assert inspect(Pure.from_sorted(1..5), limit: :infinity) =~ "[1, 2, 3, 4, 5]"
    end
  end

  describe "persistence" do
    test "old versions are unaffected by updates" do
      original = large_set()
      before = Pure.to_list(original)

      _changed =
        Enum.reduce(1..2_000, original, fn i, acc ->
          acc |> Pure.add(-i) |> Pure.remove(i * 7) |> Pure.remove_at(0) |> elem(1)
        end)

      assert Pure.to_list(original) == before
      assert_valid(original)
    end
  end

  describe "against the model" do
    # Integers and their float twins, so == matters; a key space twice the
    # target size keeps about half the adds and removes hitting.
    defp random_key(space) do
      key = :rand.uniform(space) - 1
      if :rand.uniform(4) == 1, do: key * 1.0, else: key
    end

    # The set and the model from one operation; asserts they agree.
    defp step({set, model}, space, add_weight) do
      size = length(model)

      op =
        case :rand.uniform(10 + add_weight) do
          n when n > 10 ->
            :add

          n ->
            Enum.at(
              [
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
              ],
              n - 1
            )
        end

      key = random_key(space)

      case op do
        :add ->
          {_, model} = model_add(model, key)
          {Pure.add(set, key), model}

        :index_add ->
          {index, model} = model_add(model, key)
          {actual, set} = Pure.index_add(set, key)
          assert actual == index, "index_add(#{inspect(key)})"
          {set, model}

        :remove ->
          {_, model} = model_remove(model, key)
          {Pure.remove(set, key), model}

        :index_remove ->
          {index, model} = model_remove(model, key)
          {actual, set} = Pure.index_remove(set, key)
          assert actual == index, "index_remove(#{inspect(key)})"
          {set, model}

        :remove_at ->
          index = Enum.random((-size - 2)..(size + 1))
          {item, set} = Pure.remove_at(set, index)
          assert item === model_at(model, index), "remove_at(#{index})"
          in_range? = index >= -size and index < size
          {set, if(in_range?, do: List.delete_at(model, index), else: model)}

        :find_index ->
          assert Pure.find_index(set, key) == model_find(model, key)
          assert Pure.member?(set, key) == (model_find(model, key) != nil)
          {set, model}

        :lower_bound ->
          assert Pure.lower_bound(set, key) == model_lower_bound(model, key)
          {set, model}

        :at ->
          index = Enum.random((-size - 2)..(size + 1))
          assert Pure.at(set, index, :none) === (model_at(model, index) || :none)
          {set, model}

        :slice ->
          start = Enum.random(0..(size + 1))
          amount = Enum.random(0..200)
          assert Pure.slice(set, start, amount) === Enum.slice(model, start, amount)
          {set, model}

        :range ->
          min = random_key(space)
          max = min + Enum.random(-5..300)
          assert Pure.range(set, min, max) === model_range(model, min, max)
          {set, model}
      end
    end

    defp assert_same({set, model}) do
      assert Pure.size(set) == length(model)
      assert Pure.to_list(set) === model
      assert_valid(set)
    end

    @tag timeout: 300_000
    test "thousands of random operations at #{@large} items" do
      :rand.seed(:exsss, {101, 202, 303})
      space = 2 * @large
      initial = for _ <- 1..@large, do: random_key(space)
      state = {Pure.from_enumerable(initial), model_new(initial)}
      assert_same(state)
      snapshot = state

      # Mixed operations, checked after every operation and compared whole
      # every few hundred.
      state =
        Enum.reduce(1..4_000, state, fn i, state ->
          state = step(state, space, 0)
          if rem(i, 500) == 0, do: assert_same(state)
          state
        end)

      assert_same(state)
      # The first version is untouched by everything since.
      assert_same(snapshot)
    end

    @tag timeout: 300_000
    test "growing from empty and shrinking back to empty" do
      :rand.seed(:exsss, {7, 8, 9})
      space = 10_000

      # Add-heavy operations from empty, through each root split ...
      {state, heights} =
        Enum.reduce(1..10_000, {{Pure.new(), []}, MapSet.new()}, fn i, {state, heights} ->
          {set, _model} = state = step(state, space, 12)
          if rem(i, 1_000) == 0, do: assert_same(state)
          {state, MapSet.put(heights, set.height)}
        end)

      assert_same(state)
      assert MapSet.size(heights) >= 3, "only heights #{inspect(heights)} were reached"

      # ... then only removals, by item and by position, through each root
      # collapse down to empty.
      {set, model} =
        Enum.reduce_while(Stream.iterate(1, &(&1 + 1)), state, fn
          _i, {_set, []} = state ->
            {:halt, state}

          i, {set, model} ->
            state =
              if rem(i, 2) == 0,
                do: remove_random_item(set, model),
                else: remove_random_position(set, model)

            if rem(i, 500) == 0, do: assert_same(state)
            {:cont, state}
        end)

      assert_same({set, model})
      assert set.height == 0
    end

    defp remove_random_item(set, model) do
      item = Enum.random(model)
      {index, model} = model_remove(model, item)
      {actual, set} = Pure.index_remove(set, item)
      assert actual == index
      {set, model}
    end

    defp remove_random_position(set, model) do
      index = Enum.random(0..(length(model) - 1))
      {item, set} = Pure.remove_at(set, index)
      assert item === Enum.at(model, index)
      {set, List.delete_at(model, index)}
    end
  end

  describe "properties" do
    # Any term, weighted towards a few numbers and tuples that collide under
    # == (1 and 1.0, {1} and {1.0}); any_term() alone almost never repeats.
    defp item do
      number = oneof([integer(-3, 3), :proper_types.bind(integer(-3, 3), &(&1 * 1.0), false)])
      frequency([{4, number}, {1, tuple([number])}, {2, resize(4, any_term())}])
    end

    property_test "from_enumerable/2 sorts and dedups any terms like the model", numtests: 150 do
      forall items <- list(item()) do
        set = Pure.from_enumerable(items)
        model = model_new(items)
        Pure.to_list(set) === model and Pure.size(set) == length(model)
      end
    end

    property_test "adding one by one equals building in bulk, with matching indices",
      numtests: 300 do
      forall items <- list(item()) do
        {indices, set} =
          Enum.map_reduce(items, Pure.new(), fn item, set -> Pure.index_add(set, item) end)

        {expected_indices, model} =
          Enum.map_reduce(items, [], fn item, model -> model_add(model, item) end)

        indices == expected_indices and Pure.to_list(set) === model and
          Pure.to_list(Pure.from_enumerable(items)) === model and
          Enum.all?(items, &(Pure.find_index(set, &1) == model_find(model, &1)))
      end
    end

    property_test "removals and queries agree with the model for any terms", numtests: 100 do
      forall {items, removals} <- {list(item()), list(item())} do
        set = Pure.from_enumerable(items)
        model = model_new(items)

        {set, model, agreed} =
          Enum.reduce(removals ++ Enum.take(items, 5), {set, model, true}, fn item,
                                                                              {set, model, agreed} ->
            {expected, model} = model_remove(model, item)
            {actual, set} = Pure.index_remove(set, item)
            {set, model, agreed and actual == expected}
          end)

        agreed and Pure.to_list(set) === model and
          Enum.with_index(model) |> Enum.all?(fn {item, i} -> Pure.at(set, i) === item end)
      end
    end
  end
end
