# Scheduler-latency probe self-check: shows the probe catches a NIF that
# holds a normal scheduler (negative control) and that the yielding, dirty
# and threaded variants do not.
#
#   mix run bench/scheduler.exs
Code.require_file("support/harness.ex", __DIR__)
Code.require_file("support/scheduler_probe.ex", __DIR__)
Code.require_file("../test/support/test_nif.ex", __DIR__)

alias Switchboard.Bench.{Harness, SchedulerProbe}
alias Switchboard.Test.NIF

input = :crypto.strong_rand_bytes(Harness.pick(32, 8) * 1024 * 1024)
duration = Harness.pick(3_000, 1_000)

variants = [
  {"idle (no NIF)", fn -> Process.sleep(1) end},
  {"busy pure-Elixir loop", fn -> Enum.reduce(1..100_000, 0, &(&1 + &2)) end},
  {"blocking NIF, whole binary per call (negative control)",
   fn -> NIF.diag_fnv1a_blocking(input) end},
  {"yielding NIF (timeslice + enif_schedule_nif)", fn -> NIF.diag_fnv1a_yielding(input) end},
  {"dirty CPU NIF", fn -> NIF.diag_fnv1a_dirty(input) end},
  {"native thread + enif_send",
   fn ->
     ref = NIF.diag_fnv1a_threaded(input)

     receive do
       {^ref, _} -> :ok
     end
   end}
]

rows =
  for {label, work} <- variants do
    SchedulerProbe.row(label, SchedulerProbe.measure(work, duration_ms: duration))
  end

Harness.run("scheduler", [], rows)
