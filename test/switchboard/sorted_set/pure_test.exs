defmodule Switchboard.SortedSet.PureTest do
  use ExUnit.Case, async: true

  use Switchboard.Contracts.SortedSetContract,
    implementation: Switchboard.SortedSet.Pure,
    check_structure: &assert_valid/1

  alias Switchboard.SortedSet.Pure

  doctest Switchboard.SortedSet.Pure

  # What is tested here is only what the pure twin does differently: its
  # tree stays valid (the contract runs assert_valid/1 on the sets it
  # builds), old versions are untouched by updates, and its memory is heap
  # words. Everything both twins share is in SortedSetContract.

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

  describe "remove/2 and index_remove/2" do
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
      state = {Pure.from_sorted(0..(@large - 1)), MapSet.new(0..(@large - 1))}

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

  describe "persistence" do
    test "old versions are unaffected by updates" do
      original = Pure.from_sorted(0..(@large - 1))
      before = Pure.to_list(original)

      _changed =
        Enum.reduce(1..2_000, original, fn i, acc ->
          acc |> Pure.add(-i) |> Pure.remove(i * 7) |> Pure.remove_at(0) |> elem(1)
        end)

      assert Pure.to_list(original) == before
      assert_valid(original)
    end
  end

  describe "growing and shrinking (against the model)" do
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

  describe "a persistent value" do
    test "from_enumerable and from_sorted return a set given as is; copy is the same value" do
      set = Pure.from_enumerable([2, 1])
      assert Pure.from_enumerable(set) == set
      assert Pure.from_sorted(set) == set
      assert Pure.copy(set) === set
      assert Pure.clear(set) == Pure.new()
    end

    test "memory is per item what tuples cost" do
      word = :erlang.system_info(:wordsize)
      bytes = Pure.memory(Pure.from_sorted(0..(@large - 1)))
      # Small integers are one word each, plus tuple headers and inner nodes.
      assert bytes > @large * word
      assert bytes < 2 * @large * word
    end
  end
end
