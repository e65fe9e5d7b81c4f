# Switchboard.MemberList against its pure twin: a guild's lazy member list
# with 10k subscribed sessions and a stream of presence flips, joins, leaves
# and renames.
#
#   MIX_ENV=prod mix run bench/member_list.exs                       # 100k and 1M members
#   SWITCHBOARD_BENCH_QUICK=1 MIX_ENV=prod mix run bench/member_list.exs   # 20k and 100k, 2k sessions
#   MEMBER_LIST_SIZES=100000 MIX_ENV=prod mix run bench/member_list.exs    # one size
#
# Guilds: 30% of members online (a quarter of those hoisted under one of 5
# roles); the largest size hides offline members (`offline: :hidden`, as
# Discord does for large guilds). Sessions: all on [0, 99], 30% also on one
# random window [k * 100, k * 100 + 99]. Every change is timed on its own and
# includes every session's ops (the returned updates). Both implementations
# run the same stream and must return identical updates (a phash2 of every
# change's updates is compared).
#
# The twin's memory is :erts_debug.size/1 (shared terms counted once) up to
# 300k members; above, :erts_debug.flat_size/1 (each reference counted: at
# 100k members 1.6 times the shared size), marked "flat": size/1 is written
# in Erlang and takes over ten minutes on a 1M-member twin. native_tests/bench_member_list.cpp measures the native
# core alone (no terms) at any size (build with -DSWITCHBOARD_NATIVE_BENCH=ON).
#
# Floors, per change, over the updates it returned: one term_to_binary walk
# (reading them), one binary_to_term (C building the same terms from a flat
# encoding, no list logic: what a NIF that returns them cannot beat), and a
# plain Elixir rebuild of the same lists and tuples (the VM building them).
# A change's cost is compared with them side by side.
Code.require_file("support/harness.ex", __DIR__)
Code.require_file("support/scheduler_probe.ex", __DIR__)

alias Switchboard.Bench.{Harness, SchedulerProbe}

defmodule MemberListBench do
  alias Switchboard.Bench.Harness
  alias Switchboard.MemberList

  @roles 5

  # A deterministic member: ids are snowflake-sized small integers.
  def id(index), do: 100_000_000_000 + index

  def name(index, version \\ 0) do
    <<hash::64, _::binary>> = :crypto.hash(:sha256, <<index::64, version::32>>)
    ("m" <> Base.encode32(<<hash::64>>, padding: false)) |> binary_part(0, 10)
  end

  def member(index, online?, version \\ 0) do
    hoist =
      if online? and rem(index, 4) == 0,
        do: {rem(index, @roles) * 10, :"role#{rem(index, @roles)}"},
        else: nil

    status = if online?, do: Enum.at([:online, :idle, :dnd], rem(index, 3)), else: :offline
    %{id: id(index), name: name(index, version), status: status, hoist: hoist}
  end

  def online_at_start?(index), do: rem(index * 7919, 10) < 3

  def build(impl, size, opts) do
    Enum.reduce(1..size, impl.new(opts), fn index, list ->
      {_, list} = impl.put(list, member(index, online_at_start?(index)))
      list
    end)
  end

  # Session s: [0, 99], and 30% of sessions one random window as well.
  def ranges(session, list_size) do
    windows = max(div(list_size, 100) - 1, 1)

    if rem(session * 7, 10) < 3 do
      k = 1 + rem(session * 104_729, windows)
      [[0, 99], [k * 100, k * 100 + 99]]
    else
      [[0, 99]]
    end
  end

  # Per-call wall times, and the VM's CPU time per call over them all.
  def subscribe_all(impl, list, sessions, list_size) do
    {runtime_before, _} = :erlang.statistics(:runtime)

    {times, list} =
      Harness.time_each(1..sessions, list, fn list, session ->
        {_, list} = impl.subscribe(list, session, ranges(session, list_size))
        list
      end)

    {runtime_after, _} = :erlang.statistics(:runtime)
    {times, list, (runtime_after - runtime_before) * 1000 / sessions}
  end

  # The same lists and tuples, built anew by the VM.
  def rebuild(updates) do
    for {sessions, ops} <- updates,
        do: {for(s <- sessions, do: s), for(op <- ops, do: op_copy(op))}
  end

  defp op_copy({:insert, index, item}), do: {:insert, index, item_copy(item)}
  defp op_copy({:update, index, item}), do: {:update, index, item_copy(item)}
  defp op_copy({:delete, index}), do: {:delete, index}
  defp item_copy({:member, id}), do: {:member, id}
  defp item_copy({:group, id, count}), do: {:group, id, count}

  def elapsed(fun) do
    start = System.monotonic_time(:nanosecond)
    fun.()
    System.monotonic_time(:nanosecond) - start
  end

  def native_memory(list), do: MemberList.memory(list)

  # Bytes of the twin; flat (see the top) above 300k members.
  def pure_memory(list, members) do
    words = if members <= 300_000, do: :erts_debug.size(list), else: :erts_debug.flat_size(list)
    words * :erlang.system_info(:wordsize)
  end

  def memory_note(members), do: if(members <= 300_000, do: "", else: " (flat)")

  # The change stream, as calls, generated against a model of who is where.
  def stream(size, count) do
    :rand.seed(:exsss, {1, 2, 3})

    {changes, _} =
      Enum.map_reduce(1..count, {%{}, size}, fn _, {state, next} ->
        index = :rand.uniform(size)
        {online?, version} = Map.get(state, index, {online_at_start?(index), 0})

        case :rand.uniform(100) do
          roll when roll <= 50 ->
            {{:put, member(index, not online?, version)},
             {Map.put(state, index, {not online?, version}), next}}

          roll when roll <= 70 ->
            next = next + 1
            {{:put, member(next, rem(next, 3) == 0)}, {state, next}}

          roll when roll <= 85 ->
            {{:delete, id(index)}, {state, next}}

          _ ->
            {{:put, member(index, online?, version + 1)},
             {Map.put(state, index, {online?, version + 1}), next}}
        end
      end)

    changes
  end

  def apply_change(impl, list, {:put, member}), do: impl.put(list, member)
  def apply_change(impl, list, {:delete, id}), do: impl.delete(list, id)

  # Per change: {time, fingerprint of the updates, entries, sessions told,
  # term_to_binary walk time}. Only the time is measured around the call;
  # the updates are dropped after they are fingerprinted, so the process
  # heap (and its garbage collections, billed to the next call) stays small.
  # The updates of every 10th change are kept for the build floors, timed
  # after the stream (outside its CPU time).
  def run_stream(impl, list, changes) do
    {runtime_before, _} = :erlang.statistics(:runtime)

    {samples, {_list, kept}} =
      changes
      |> Enum.with_index()
      |> Enum.map_reduce({list, []}, fn {change, n}, {list, kept} ->
        start = System.monotonic_time(:nanosecond)
        {updates, list} = apply_change(impl, list, change)
        elapsed = System.monotonic_time(:nanosecond) - start
        walk_start = System.monotonic_time(:nanosecond)
        bytes = byte_size(:erlang.term_to_binary(updates))
        walk = System.monotonic_time(:nanosecond) - walk_start
        told = Enum.reduce(updates, 0, fn {sessions, _}, acc -> acc + length(sessions) end)
        kept = if rem(n, 10) == 0 and updates != [], do: [updates | kept], else: kept

        {{elapsed, :erlang.phash2(updates), length(updates), told,
          if(bytes > 0, do: walk, else: 0)}, {list, kept}}
      end)

    # VM CPU time per change over the whole stream: robust where wall-clock
    # samples wait for a core on a shared machine. It includes the
    # fingerprint and the term_to_binary walk above, the same work for both
    # implementations (identical updates), so the ratio understates.
    {runtime_after, _} = :erlang.statistics(:runtime)

    floors =
      for updates <- kept do
        binary = :erlang.term_to_binary(updates)
        {elapsed(fn -> :erlang.binary_to_term(binary) end), elapsed(fn -> rebuild(updates) end)}
      end

    {samples, (runtime_after - runtime_before) * 1000 / length(changes), floors}
  end
end

alias Switchboard.MemberList
alias Switchboard.MemberList.Pure, as: Twin

sizes =
  case System.get_env("MEMBER_LIST_SIZES") do
    nil -> Harness.pick([100_000, 1_000_000], [20_000, 100_000])
    text -> text |> String.split(",") |> Enum.map(&String.to_integer/1)
  end

sessions = Harness.pick(10_000, 2_000)
changes = Harness.pick(2_000, 500)
largest = Enum.max(sizes)

results =
  for size <- sizes do
    opts = if size == largest and size >= 1_000_000, do: [offline: :hidden], else: []
    label = "#{div(size, 1000)}k#{if opts == [], do: "", else: " hidden"}"
    IO.write(:stderr, "  member_list #{label}: building")

    # Native first, then the twin: while the twin lives in this process its
    # heap (hundreds of MB at 1M) is copied by every major collection, which
    # would be billed to whatever runs then. The items are compared by hash.
    {native_build_us, native} = :timer.tc(fn -> MemberListBench.build(MemberList, size, opts) end)
    native_items = :erlang.phash2(MemberList.items(native))
    list_size = MemberList.size(native)
    native_bytes = MemberListBench.native_memory(native)
    stream = MemberListBench.stream(size, changes)

    IO.write(:stderr, ", native")

    {native_sub, native, native_sub_cpu_us} =
      MemberListBench.subscribe_all(MemberList, native, sessions, list_size)

    native_sub_bytes = MemberListBench.native_memory(native) - native_bytes

    {native_samples, native_cpu_us, floors} =
      MemberListBench.run_stream(MemberList, native, stream)

    IO.write(:stderr, ", twin")
    {pure_build_us, pure} = :timer.tc(fn -> MemberListBench.build(Twin, size, opts) end)
    true = native_items == :erlang.phash2(Twin.items(pure))
    pure_bytes = MemberListBench.pure_memory(pure, size)

    {pure_sub, pure, pure_sub_cpu_us} =
      MemberListBench.subscribe_all(Twin, pure, sessions, list_size)

    pure_sub_bytes = MemberListBench.pure_memory(pure, size) - pure_bytes
    {pure_samples, pure_cpu_us, _} = MemberListBench.run_stream(Twin, pure, stream)

    mismatches =
      Enum.zip(native_samples, pure_samples)
      |> Enum.count(fn {a, b} -> elem(a, 1) != elem(b, 1) end)

    if mismatches > 0, do: raise("native and twin updates differ on #{mismatches} changes")

    native_times = Enum.map(native_samples, &elem(&1, 0))
    pure_times = Enum.map(pure_samples, &elem(&1, 0))
    copy_times = Enum.map(native_samples, &elem(&1, 4))
    decode_times = Enum.map(floors, &elem(&1, 0))
    rebuild_times = Enum.map(floors, &elem(&1, 1))
    entries = native_samples |> Enum.map(&elem(&1, 2)) |> Enum.sort()
    told = native_samples |> Enum.map(&elem(&1, 3)) |> Enum.sort()

    IO.write(:stderr, "\n")

    %{
      label: label,
      size: size,
      list_size: list_size,
      native_build_us: native_build_us,
      pure_build_us: pure_build_us,
      native_bytes: native_bytes,
      pure_bytes: pure_bytes,
      native_sub: native_sub,
      pure_sub: pure_sub,
      native_sub_bytes: native_sub_bytes,
      pure_sub_bytes: pure_sub_bytes,
      native_times: native_times,
      pure_times: pure_times,
      copy_times: copy_times,
      decode_times: decode_times,
      rebuild_times: rebuild_times,
      native_sub_cpu_us: native_sub_cpu_us,
      pure_sub_cpu_us: pure_sub_cpu_us,
      native_cpu_us: native_cpu_us,
      pure_cpu_us: pure_cpu_us,
      entries_median: Harness.percentile(entries, 0.5),
      told_median: Harness.percentile(told, 0.5),
      native: native
    }
  end

jobs =
  for r <- results do
    [
      [
        name: "#{r.label}: one change incl. every session's ops",
        baseline: {"pure twin", fn -> r.pure_times end},
        candidates: [
          {"native", fn -> r.native_times end},
          {"floor: term_to_binary of the updates", fn -> r.copy_times end},
          {"floor: binary_to_term of the updates (C builds them; every 10th change)",
           fn -> r.decode_times end},
          {"floor: Elixir rebuild of the updates (VM builds them; every 10th change)",
           fn -> r.rebuild_times end}
        ]
      ],
      [
        name: "#{r.label}: subscribe one session (sync of its ranges)",
        baseline: {"pure twin", fn -> r.pure_sub end},
        candidates: [{"native", fn -> r.native_sub end}]
      ]
    ]
  end
  |> Enum.concat()

figure_rows =
  for r <- results do
    [
      {"guild", r.label},
      {"list items", r.list_size},
      {"build (puts), native / twin",
       "#{div(r.native_build_us, 1000)} ms / #{div(r.pure_build_us, 1000)} ms (#{Float.round(r.pure_build_us / max(r.native_build_us, 1), 1)}x)"},
      {"bytes/member native / twin",
       "#{Float.round(r.native_bytes / r.size, 1)} / #{Float.round(r.pure_bytes / r.size, 1)}#{MemberListBench.memory_note(r.size)}"},
      {"bytes/subscription native / twin",
       "#{Float.round(r.native_sub_bytes / sessions, 1)} / #{Float.round(r.pure_sub_bytes / sessions, 1)}#{MemberListBench.memory_note(r.size)}"},
      {"mean CPU per change (stream), native / twin",
       "#{Float.round(r.native_cpu_us, 1)} µs / #{Float.round(r.pure_cpu_us, 1)} µs (#{Float.round(r.pure_cpu_us / max(r.native_cpu_us, 0.001), 1)}x)"},
      {"mean CPU per subscribe, native / twin",
       "#{Float.round(r.native_sub_cpu_us, 1)} µs / #{Float.round(r.pure_sub_cpu_us, 1)} µs (#{Float.round(r.pure_sub_cpu_us / max(r.native_sub_cpu_us, 0.001), 2)}x)"},
      {"entries per change (median)", r.entries_median},
      {"sessions told per change (median)", r.told_median}
    ]
  end

# Scheduler probe on the largest native list (kept in persistent_term, not in
# the workers' closures).
probe_list = List.last(results).native
probe_size = List.last(results).size
:persistent_term.put({MemberListBench, :list}, probe_list)
:persistent_term.put({MemberListBench, :size}, probe_size)

flip = fn ->
  list = :persistent_term.get({MemberListBench, :list})
  index = :rand.uniform(:persistent_term.get({MemberListBench, :size}))
  MemberList.put(list, MemberListBench.member(index, :rand.uniform(2) == 1))
  :ok
end

subscribe = fn ->
  list = :persistent_term.get({MemberListBench, :list})
  session = {:probe, :rand.uniform(10_000)}

  MemberList.subscribe(
    list,
    session,
    MemberListBench.ranges(:rand.uniform(10_000), MemberList.size(list))
  )

  :ok
end

build_list = MemberList.new(offline: :hidden)
:persistent_term.put({MemberListBench, :build}, build_list)

build = fn ->
  list = :persistent_term.get({MemberListBench, :build})
  index = :rand.uniform(1_000_000)
  MemberList.put(list, MemberListBench.member(index, MemberListBench.online_at_start?(index)))
  :ok
end

duration = Harness.pick(4000, 1500)

probe_rows = [
  SchedulerProbe.row(
    "idle",
    SchedulerProbe.measure(fn -> Process.sleep(1) end, duration_ms: 1000)
  ),
  # The control: the same loop shape with no NIF at all, so the rows below
  # read against what any busy process costs the probe on this machine.
  SchedulerProbe.row(
    "control: a pure Elixir loop (no NIF), in a loop",
    SchedulerProbe.measure(
      fn -> Enum.reduce(1..200, 0, fn i, acc -> rem(acc + i * 7, 1_000_003) end) end,
      duration_ms: duration
    )
  ),
  SchedulerProbe.row(
    "changes to the #{div(probe_size, 1000)}k list with #{sessions} sessions, in a loop",
    SchedulerProbe.measure(flip, duration_ms: duration)
  ),
  SchedulerProbe.row(
    "subscribing sessions to the #{div(probe_size, 1000)}k list, in a loop",
    SchedulerProbe.measure(subscribe, duration_ms: duration)
  ),
  SchedulerProbe.row(
    "building a list (puts of new members), in a loop",
    SchedulerProbe.measure(build, duration_ms: duration)
  )
]

Harness.run_latency("member_list", jobs, figure_rows ++ probe_rows)
