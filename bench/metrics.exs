# Switchboard.Metrics against its ETS twin, OTP's :counters and folsom:
# counter increments and histogram records with 1, 2, 8 and 64 processes
# writing the same metric at once.
#
#   ERL_FLAGS="+sbwt none +sbwtdcpu none +sbwtdio none" MIX_ENV=prod mix run bench/metrics.exs
#   SWITCHBOARD_BENCH_QUICK=1 MIX_ENV=prod mix run bench/metrics.exs
#
# Targets: an increment within 1.5x of :counters.add/3; a histogram record
# >= 5x faster than folsom's and >= 2x the ETS twin's. The floor row is one
# call of an empty NIF (diag_add, from the test NIF library), what any NIF
# call costs. Every figure is CPU time of the whole VM per operation
# (CLOCK_PROCESS_CPUTIME_ID), not wall time, so other programs on a shared
# machine do not move it; without busy-waiting schedulers (the ERL_FLAGS
# above) an idle scheduler's spinning is not counted either.
Code.require_file("support/harness.ex", __DIR__)
Code.require_file("../test/support/test_nif.ex", __DIR__)
Code.require_file("support/concurrency.ex", __DIR__)
Code.require_file("support/scheduler_probe.ex", __DIR__)

# folsom and bear come from Debian (erlang-folsom) under the OTP lib dir.
for app <- ["folsom", "bear"], dir <- Path.wildcard("#{:code.lib_dir()}/#{app}-*/ebin") do
  :code.add_pathz(String.to_charlist(dir))
end

{:ok, _} = Application.ensure_all_started(:folsom)

defmodule MetricsBench do
  # Everything timed lives in this compiled module.
  alias Switchboard.Bench.{Concurrency, Harness}
  alias Switchboard.Metrics
  alias Switchboard.Metrics.Pure

  def counters_loop(_ref, 0), do: :ok

  def counters_loop(ref, n) do
    :counters.add(ref, 1, 1)
    counters_loop(ref, n - 1)
  end

  def native_loop(0), do: :ok

  def native_loop(n) do
    Metrics.increment(:bench_counter)
    native_loop(n - 1)
  end

  def native_tagged_loop(0), do: :ok

  def native_tagged_loop(n) do
    Metrics.increment("bench.counter", 1, shard: 7, kind: :dispatch)
    native_tagged_loop(n - 1)
  end

  def pure_loop(0), do: :ok

  def pure_loop(n) do
    Pure.increment(:bench_counter)
    pure_loop(n - 1)
  end

  def floor_loop(0), do: :ok

  def floor_loop(n) do
    3 = Switchboard.Test.NIF.diag_add(1, 2)
    floor_loop(n - 1)
  end

  # Histogram values spread over three decades, computed the same way for all.
  defp value(n), do: rem(n * 7919, 100_000)

  def native_histogram_loop(0), do: :ok

  def native_histogram_loop(n) do
    Metrics.histogram(:bench_histogram, value(n))
    native_histogram_loop(n - 1)
  end

  def pure_histogram_loop(0), do: :ok

  def pure_histogram_loop(n) do
    Pure.histogram(:bench_histogram, value(n))
    pure_histogram_loop(n - 1)
  end

  def folsom_loop(0), do: :ok

  def folsom_loop(n) do
    :ok = :folsom_metrics.notify(:bench_histogram, value(n))
    folsom_loop(n - 1)
  end

  defp cpu_ns, do: Switchboard.Test.NIF.diag_process_cpu_ns()

  def run do
    total = Harness.pick(200_000, 60_000)
    # Counter rounds are longer: an increment is tens of ns.
    counter_total = Harness.pick(1_000_000, 300_000)
    rounds = Harness.pick(5, 3)
    ref = :counters.new(1, [:write_concurrency])
    :ok = :folsom_metrics.new_histogram(:bench_histogram)

    {jobs, extra} =
      for procs <- [1, 2, 8, 64], reduce: {[], []} do
        {jobs, extra} ->
          before = counts()

          counter_results =
            Concurrency.interleaved(
              [
                {":counters.add/3", &counters_loop(ref, &1)},
                {"Metrics.increment (native)", &native_loop/1},
                {"Metrics.increment (native, string + 2 tags)", &native_tagged_loop/1},
                {"Metrics.Pure.increment (ETS twin)", &pure_loop/1},
                {"floor: 1 empty NIF call", &floor_loop/1}
              ],
              procs,
              counter_total,
              rounds,
              &cpu_ns/0
            )

          # Exact counts: every increment of every round is there.
          done = rounds * procs * max(div(counter_total, procs), 1)
          after_ = counts()

          for {key, count} <- after_,
              do: ^done = count - Map.fetch!(before, key)

          histogram_results =
            Concurrency.interleaved(
              [
                {"folsom notify (histogram)", &folsom_loop/1},
                {"Metrics.histogram (native)", &native_histogram_loop/1},
                {"Metrics.Pure.histogram (ETS twin)", &pure_histogram_loop/1},
                {"floor: 1 empty NIF call", &floor_loop/1}
              ],
              procs,
              total,
              rounds,
              &cpu_ns/0
            )

          plural = if procs > 1, do: "es", else: ""

          counter_job =
            Concurrency.job(
              "increment, #{procs} process#{plural}",
              counter_results,
              ":counters.add/3",
              [
                "Metrics.increment (native)",
                "Metrics.increment (native, string + 2 tags)",
                "Metrics.Pure.increment (ETS twin)",
                "floor: 1 empty NIF call"
              ]
            )

          histogram_job =
            Concurrency.job(
              "histogram record, #{procs} process#{plural}",
              histogram_results,
              "folsom notify (histogram)",
              [
                "Metrics.histogram (native)",
                "Metrics.Pure.histogram (ETS twin)",
                "floor: 1 empty NIF call"
              ]
            )

          m = &Concurrency.median/2
          native = m.(counter_results, "Metrics.increment (native)")
          counters = m.(counter_results, ":counters.add/3")
          twin = m.(counter_results, "Metrics.Pure.increment (ETS twin)")
          floor = m.(counter_results, "floor: 1 empty NIF call")
          h_native = m.(histogram_results, "Metrics.histogram (native)")
          h_folsom = m.(histogram_results, "folsom notify (histogram)")
          h_twin = m.(histogram_results, "Metrics.Pure.histogram (ETS twin)")

          row = [
            processes: procs,
            "increment native ns": Float.round(native, 1),
            ":counters ns": Float.round(counters, 1),
            "native / :counters (target <= 1.50×)": Harness.format_ratio(native / counters),
            "twin / native": Harness.format_ratio(twin / native),
            "floor ns (1 NIF call)": Float.round(floor, 1),
            "floor / :counters": Harness.format_ratio(floor / counters),
            "histogram native ns": Float.round(h_native, 1),
            "folsom / native (target >= 5×)": Harness.format_ratio(h_folsom / h_native),
            "twin / native (target >= 2×)": Harness.format_ratio(h_twin / h_native)
          ]

          {jobs ++ [counter_job, histogram_job], extra ++ [row]}
      end

    Harness.run_latency("metrics", jobs, extra ++ probe_rows())
  end

  # snapshot/0 merges every shard on a dirty scheduler: with 20,000 keys
  # (10,000 counters, 10,000 histograms) the normal schedulers stay responsive.
  def probe_rows do
    alias Switchboard.Bench.SchedulerProbe

    for i <- 1..10_000 do
      Metrics.increment("probe.counter", 1, id: i)
      Metrics.histogram("probe.histogram", i, id: i)
    end

    duration = Harness.pick(2_000, 1_000)

    [
      SchedulerProbe.row(
        "idle",
        SchedulerProbe.measure(fn -> Process.sleep(1) end, duration_ms: 1_000)
      ),
      SchedulerProbe.row(
        "increment + histogram, in a loop",
        SchedulerProbe.measure(
          fn ->
            native_loop(100)
            native_histogram_loop(100)
          end,
          duration_ms: duration
        )
      ),
      SchedulerProbe.row(
        "snapshot of 20,000 keys, in a loop",
        SchedulerProbe.measure(fn -> Metrics.snapshot() end, duration_ms: duration)
      )
    ]
  end

  defp counts do
    native = Metrics.snapshot().counters
    pure = Pure.snapshot().counters

    %{
      native: Map.get(native, {:bench_counter, []}, 0),
      native_tagged: Map.get(native, {"bench.counter", [kind: :dispatch, shard: 7]}, 0),
      pure: Map.get(pure, {:bench_counter, []}, 0)
    }
  end
end

MetricsBench.run()
