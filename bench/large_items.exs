# Scheduler latency while native calls touch many BYTES in few items: one
# huge sorted-set item, slices of large items, a fan-out of a large message.
# The work is counted in bytes (term_size estimates, key bytes, message
# bytes) and goes to dirty schedulers; without that, each call held a
# normal scheduler for 100+ ms (issue 9).
#
#   MIX_ENV=prod mix run bench/large_items.exs
#   SWITCHBOARD_BENCH_QUICK=1 mix run bench/large_items.exs
#
# One table: the probe's wake-up delay (p50/p99/max) per workload, beside
# the idle row and, for the fan-out, the same copies made by a send/2 loop
# (OTP's own baseline: send/2 yields between receivers), all from one run.
Code.require_file("support/harness.ex", __DIR__)
Code.require_file("support/scheduler_probe.ex", __DIR__)

alias Switchboard.Bench.{Harness, SchedulerProbe}
alias Switchboard.{Fanout, SortedSet}

probe_ms = Harness.pick(3000, 1200)

huge = :binary.copy(<<7, 0, 255, 1>>, 4 * 1024 * 1024)
huge_set = SortedSet.from_enumerable([1, 2])

items = for i <- 1..1_000, do: <<i::32, :binary.copy(<<1>>, 50_000)::binary>>
large_items = SortedSet.from_sorted(items)

# Receivers that drop what they get, so their queues stay short.
sink = fn ->
  spawn(fn -> Stream.repeatedly(fn -> receive(do: (_ -> :ok)) end) |> Stream.run() end)
end

receivers = for _ <- 1..16, do: sink.()
# In persistent_term: a closure would copy 5 MB into each worker's heap, and
# the workers' own garbage collections would then dominate the probe.
:persistent_term.put(:large_items_message, {:big, Enum.to_list(1..300_000)})

rows = [
  SchedulerProbe.row(
    "idle",
    SchedulerProbe.measure(fn -> Process.sleep(1) end, duration_ms: 1000)
  ),
  SchedulerProbe.row(
    "SortedSet add + find_index + remove of one 16 MB binary, in a loop",
    SchedulerProbe.measure(
      fn ->
        SortedSet.add(huge_set, huge)
        SortedSet.find_index(huge_set, huge)
        SortedSet.remove(huge_set, huge)
      end,
      duration_ms: probe_ms
    )
  ),
  SchedulerProbe.row(
    "SortedSet.slice of 1,000 items of 50 KB, in a loop",
    SchedulerProbe.measure(fn -> SortedSet.slice(large_items, 0, 1_000) end,
      duration_ms: probe_ms
    )
  ),
  SchedulerProbe.row(
    "Fanout.send of a 300k-element message to 16 receivers, in a loop",
    SchedulerProbe.measure(
      fn -> Fanout.send(receivers, :persistent_term.get(:large_items_message)) end,
      duration_ms: probe_ms
    )
  ),
  SchedulerProbe.row(
    "baseline: the same 16 copies by a send/2 loop",
    SchedulerProbe.measure(
      fn ->
        message = :persistent_term.get(:large_items_message)
        Enum.each(receivers, &send(&1, message))
      end,
      duration_ms: probe_ms
    )
  )
]

Harness.run("large-items", [], rows)
