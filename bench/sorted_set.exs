# Switchboard.SortedSet against its pure twin (and :gb_sets where it applies),
# on member-list keys {-role_position, name, user_id}.
#
#   mix run bench/sorted_set.exs                      # 5k, 50k, 250k, 1M
#   SWITCHBOARD_BENCH_QUICK=1 mix run bench/sorted_set.exs   # 5k, 50k
#   SORTED_SET_SIZES=1000000 mix run bench/sorted_set.exs     # 1M only
#
# Every operation is timed on its own (monotonic clock around one call), so
# the medians and p99s are per operation and include the call overhead,
# which the "timer + closure overhead" row shows.
Code.require_file("support/harness.ex", __DIR__)
Code.require_file("support/scheduler_probe.ex", __DIR__)

alias Switchboard.Bench.{Harness, SchedulerProbe}
alias Switchboard.SortedSet
alias Switchboard.SortedSet.Pure

defmodule SortedSetBench do
  # Everything that is timed lives in this compiled module: closures written
  # at the top level of an .exs file run in the interpreter, far slower.
  alias Switchboard.Bench.Harness
  alias Switchboard.SortedSet
  alias Switchboard.SortedSet.Pure

  # A member-list key: higher roles first, then name, then id.
  def key(role, name_rank, user_id) do
    {-role, "member-" <> String.pad_leading(Integer.to_string(name_rank), 8, "0"), user_id}
  end

  # `size` members spread over 20 roles; ids 1..size.
  def keys(size) do
    for id <- 1..size, do: key(rem(id * 7, 20) + 1, rem(id * 104_729, size * 3), id)
  end

  # Keys that land at the start (role 100 sorts first), middle, or end (role 0).
  def probe_keys(:start, count), do: for(i <- 1..count, do: key(100, i, 10_000_000 + i))
  def probe_keys(:end, count), do: for(i <- 1..count, do: key(0, i, 20_000_000 + i))

  def probe_keys(:middle, count) do
    for i <- 1..count, do: key(10, 1_500_000_000 + i, 30_000_000 + i)
  end

  def empty_op_times do
    {times, _} = Harness.time_each(1..5000, nil, fn state, _ -> state end)
    times
  end

  # The floor of a NIF operation: one call with the set and nothing else to
  # do (no key to build, no tree to search).
  def nif_call_times do
    set = SortedSet.from_enumerable([1, 2, 3])
    {times, _} = Harness.time_each(1..5000, set, fn set, _ -> SortedSet.size(set) && set end)
    times
  end

  def ops(size), do: Harness.pick(min(size, 5_000), min(size, 1_000))

  def native(keys), do: SortedSet.from_enumerable(keys)
  def pure(keys), do: Pure.from_enumerable(keys)
  def gb(keys), do: :gb_sets.from_list(keys)

  def jobs(sizes) do
    for size <- sizes do
      keys = SortedSetBench.keys(size)
      native = SortedSetBench.native(keys)
      pure = SortedSetBench.pure(keys)
      gb = SortedSetBench.gb(keys)
      ops = SortedSetBench.ops(size)
      sample = Enum.take_random(keys, ops)
      indexes = Enum.map(1..ops, fn i -> rem(i * 7919, size) end)
      label = "#{div(size, 1000)}k"

      add_remove_jobs =
        for where <- [:start, :middle, :end] do
          new_keys = SortedSetBench.probe_keys(where, ops)

          add = [
            name: "#{label} add at #{where}",
            baseline:
              {"Pure",
               fn ->
                 {times, _} = Harness.time_each(new_keys, pure, &Pure.add(&1, &2))
                 times
               end},
            candidates: [
              {"NIF",
               fn ->
                 {times, set} = Harness.time_each(new_keys, native, &SortedSet.add(&1, &2))
                 true = SortedSet.size(set) == size + ops
                 Enum.each(new_keys, &SortedSet.remove(native, &1))
                 times
               end},
              {":gb_sets",
               fn ->
                 {times, _} = Harness.time_each(new_keys, gb, &:gb_sets.add(&2, &1))
                 times
               end}
            ]
          ]

          remove = [
            name: "#{label} remove at #{where}",
            baseline:
              {"Pure",
               fn ->
                 with_new = Enum.reduce(new_keys, pure, &Pure.add(&2, &1))
                 {times, set} = Harness.time_each(new_keys, with_new, &Pure.remove(&1, &2))
                 true = Pure.size(set) == size
                 times
               end},
            candidates: [
              {"NIF",
               fn ->
                 Enum.each(new_keys, &SortedSet.add(native, &1))
                 {times, set} = Harness.time_each(new_keys, native, &SortedSet.remove(&1, &2))
                 true = SortedSet.size(set) == size
                 times
               end},
              {":gb_sets",
               fn ->
                 with_new = Enum.reduce(new_keys, gb, &:gb_sets.add/2)
                 {times, _} = Harness.time_each(new_keys, with_new, &:gb_sets.delete(&2, &1))
                 times
               end}
            ]
          ]

          [add, remove]
        end

      # Read jobs return the values they read so they can be checked.
      read = fn name, pure_fun, native_fun, inputs ->
        [
          name: "#{label} #{name}",
          baseline:
            {"Pure",
             fn ->
               {times, _} =
                 Harness.time_each(inputs, pure, fn set, x -> pure_fun.(set, x) && set end)

               times
             end},
          candidates: [
            {"NIF",
             fn ->
               expected = Enum.map(inputs, &pure_fun.(pure, &1))
               true = Enum.map(inputs, &native_fun.(native, &1)) == expected

               {times, _} =
                 Harness.time_each(inputs, native, fn set, x -> native_fun.(set, x) && set end)

               times
             end}
          ]
        ]
      end

      find_index = read.("find_index", &Pure.find_index/2, &SortedSet.find_index/2, sample)
      at = read.("at", &Pure.at(&1, &2), &SortedSet.at(&1, &2), indexes)

      slice =
        read.("slice(…, 100)", &Pure.slice(&1, &2, 100), &SortedSet.slice(&1, &2, 100), indexes)

      member = [
        name: "#{label} member?",
        baseline:
          {"Pure",
           fn ->
             {times, _} = Harness.time_each(sample, pure, &(Pure.member?(&1, &2) && &1))
             times
           end},
        candidates: [
          {"NIF",
           fn ->
             {times, _} = Harness.time_each(sample, native, &(SortedSet.member?(&1, &2) && &1))
             times
           end},
          {":gb_sets",
           fn ->
             {times, _} = Harness.time_each(sample, gb, &(:gb_sets.is_element(&2, &1) && &1))
             times
           end}
        ]
      ]

      sorted = Enum.sort(keys)
      builds = Harness.pick(5, 2)

      bulk = [
        name: "#{label} bulk build (from_sorted), per build",
        baseline:
          {"Pure",
           fn ->
             for _ <- 1..builds do
               {t, set} = :timer.tc(fn -> Pure.from_sorted(sorted) end)
               true = Pure.size(set) == size
               t * 1000
             end
           end},
        candidates: [
          {"NIF",
           fn ->
             for _ <- 1..builds do
               {t, set} = :timer.tc(fn -> SortedSet.from_sorted(sorted) end)
               true = SortedSet.size(set) == size
               t * 1000
             end
           end},
          {":gb_sets",
           fn ->
             for _ <- 1..builds do
               {t, _} = :timer.tc(fn -> :gb_sets.from_ordset(sorted) end)
               t * 1000
             end
           end}
        ]
      ]

      Enum.concat(add_remove_jobs) ++ [find_index, at, slice, member, bulk]
    end
  end
end

# SORTED_SET_SIZES=1000000 runs only the listed sizes.
sizes =
  case System.get_env("SORTED_SET_SIZES") do
    nil -> Harness.pick([5_000, 50_000, 250_000, 1_000_000], [5_000, 50_000])
    list -> list |> String.split(",") |> Enum.map(&String.to_integer/1)
  end

jobs = sizes |> SortedSetBench.jobs() |> Enum.concat()

overhead = [
  name: "timer + closure overhead (empty op)",
  baseline: {"empty op", &SortedSetBench.empty_op_times/0},
  candidates: [{"size/1 (a NIF call, no key)", &SortedSetBench.nif_call_times/0}]
]

probe_size = Harness.pick(1_000_000, 200_000)
# In persistent_term, not captured by the probe's closures: a closure's
# terms are copied into each worker's heap, where every garbage collection
# of the worker would copy the million keys on a normal scheduler (tens of
# ms), whatever the NIF does.
:persistent_term.put({SortedSetBench, :probe_keys}, SortedSetBench.keys(probe_size))

probe_rows = [
  SchedulerProbe.row(
    "idle",
    SchedulerProbe.measure(fn -> Process.sleep(1) end, duration_ms: 1000)
  ),
  SchedulerProbe.row(
    "#{div(probe_size, 1000)}k-item from_enumerable builds, in a loop",
    SchedulerProbe.measure(
      fn -> SortedSet.from_enumerable(:persistent_term.get({SortedSetBench, :probe_keys})) end,
      duration_ms: Harness.pick(5000, 2000)
    )
  ),
  SchedulerProbe.row(
    "#{div(probe_size, 1000)}k-item to_list, in a loop",
    (fn ->
       set = SortedSet.from_enumerable(:persistent_term.get({SortedSetBench, :probe_keys}))

       SchedulerProbe.measure(fn -> SortedSet.to_list(set) end,
         duration_ms: Harness.pick(5000, 2000)
       )
     end).()
  )
]

memory_rows =
  for size <- sizes do
    set = SortedSet.from_enumerable(SortedSetBench.keys(size))

    [
      {"items", size},
      {"native bytes/item", Float.round(SortedSet.memory(set) / size, 1)},
      {"pure twin words/item",
       Float.round(
         :erts_debug.flat_size(Pure.from_enumerable(SortedSetBench.keys(size))) / size,
         1
       )}
    ]
  end

Harness.run_latency("sorted_set", [overhead | jobs], probe_rows ++ memory_rows)
