defmodule Switchboard.SortedSet.LargeItemsTest do
  # Not async: SchedulerHold uses the node-wide system monitor.
  use ExUnit.Case, async: false

  alias Switchboard.NIF
  alias Switchboard.SortedSet
  alias Switchboard.Test.SchedulerHold

  # Work is counted in bytes, not only items: one huge item, or a thousand
  # large ones, must not hold a normal scheduler any more than a million
  # small ones do. (Comparing the results happens outside the measured
  # function: `==` over megabytes of binaries is itself a long BIF call.)
  describe "large items stay off the normal schedulers" do
    setup do
      # 32 MB: tens of ms of key building, or of term making, done inline.
      %{huge: :binary.copy(<<7, 0, 255, 1>>, 8 * 1024 * 1024)}
    end

    test "add, find_index, lower_bound, at, remove_at and remove of one 32 MB binary", %{
      huge: huge
    } do
      set = SortedSet.from_enumerable([1, 2])

      {held, results} =
        SchedulerHold.measure(fn ->
          {index, _} = SortedSet.index_add(set, huge)
          at = SortedSet.at(set, -1)
          found = {SortedSet.find_index(set, huge), SortedSet.lower_bound(set, huge)}
          {removed, _} = SortedSet.remove_at(set, -1)
          {again, _} = SortedSet.index_add(set, huge)
          {index, at, found, removed, again, SortedSet.index_remove(set, huge) |> elem(0)}
        end)

      assert held == nil
      assert {2, at, {2, 2}, removed, 2, 2} = results
      assert at == huge and removed == huge
    end

    test "from_enumerable, range and slice_after with a 32 MB item", %{huge: huge} do
      {held, results} =
        SchedulerHold.measure(fn ->
          set = SortedSet.from_enumerable([huge, 1])

          {SortedSet.size(set), SortedSet.range(set, 0, huge),
           SortedSet.slice_after(set, huge, 5)}
        end)

      assert held == nil
      assert {2, [1, range_huge], []} = results
      assert range_huge == huge
    end

    test "slice, to_list, Enum and copy over 1,000 items of 50 KB" do
      items = for i <- 1..1000, do: <<i::32, :binary.copy(<<1>>, 50_000)::binary>>
      set = SortedSet.from_sorted(items)

      {held, {slice, list, enumerated, copy_size}} =
        SchedulerHold.measure(fn ->
          {SortedSet.slice(set, 0, 1000), SortedSet.to_list(set), Enum.to_list(set),
           SortedSet.copy(set) |> SortedSet.size()}
        end)

      assert held == nil
      assert slice == items and list == items and enumerated == items
      assert copy_size == 1000
    end
  end

  describe "waiting for the lock stays off the normal schedulers" do
    # Readers of a million items hold the set for tens of ms on dirty
    # schedulers; a writer or reader on a normal scheduler spins a bounded
    # tens of microseconds for the lock, then continues on a dirty scheduler.
    test "writers and readers racing long to_list calls" do
      {held, results, lengths, size} =
        with_large_set(fn set ->
          readers =
            for _ <- 1..2,
                do: Task.async(fn -> for _ <- 1..3, do: length(SortedSet.to_list(set)) end)

          {held, results} =
            SchedulerHold.measure(fn ->
              for i <- 1..3000 do
                {index, _} = SortedSet.index_add(set, -i)
                {index, SortedSet.find_index(set, -i), SortedSet.at(set, 0)}
              end
            end)

          {held, results, Enum.flat_map(readers, &Task.await(&1, 60_000)), SortedSet.size(set)}
        end)

      assert held == nil
      assert Enum.all?(results, &match?({0, 0, _}, &1))
      assert Enum.all?(lengths, &(&1 in 1_000_000..1_003_000))
      assert size == 1_003_000
    end

    test "writers combining while other writers and long to_list calls run" do
      # A writer that takes the lock applies the writes the others queued;
      # its own call must still stay short on its normal scheduler.
      {held, writes, lengths, size} =
        with_large_set(fn set ->
          reader = Task.async(fn -> for _ <- 1..2, do: length(SortedSet.to_list(set)) end)

          write = fn w ->
            for i <- 1..3000 do
              {added, _} = SortedSet.index_add(set, {w, i})
              {removed, _} = SortedSet.index_remove(set, {w, i})
              is_integer(added) and is_integer(removed)
            end
          end

          writers = for w <- 1..4, do: Task.async(fn -> write.(w) end)
          {held, results} = SchedulerHold.measure(fn -> write.(0) end)
          others = Enum.flat_map(writers, &Task.await(&1, 60_000))
          {held, results ++ others, Task.await(reader, 60_000), SortedSet.size(set)}
        end)

      assert held == nil
      assert Enum.all?(writes)
      # Up to one item of each writer in the set while it reads.
      assert Enum.all?(lengths, &(&1 in 1_000_000..1_000_005))
      assert size == 1_000_000
    end
  end

  # Runs `fun` on a set of a million integers in a process of its own, and
  # waits until the reply thread has freed the set (after the processes that
  # held it are gone): a later test reading the library-wide allocation
  # counter (FreeTest) must not see those megabytes go.
  defp with_large_set(fun) do
    jobs_before = NIF.library_info().reply_jobs_completed

    result =
      Task.async(fn -> fun.(SortedSet.from_enumerable(1..1_000_000)) end) |> Task.await(120_000)

    assert Enum.any?(1..400, fn _ -> freed?(jobs_before) end)
    result
  end

  defp freed?(jobs_before) do
    NIF.library_info().reply_jobs_completed > jobs_before or (Process.sleep(25) && false)
  end
end
