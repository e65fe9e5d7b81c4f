# Switchboard.Semaphore against its ETS twin and discord/semaphore's own
# algorithm: acquire+release on one name with 1, 2, 8 and 64 processes at
# once, and how long a killed holder's slot takes to come back.
#
#   MIX_ENV=prod mix run bench/semaphore.exs
#   SWITCHBOARD_BENCH_QUICK=1 MIX_ENV=prod mix run bench/semaphore.exs
#
# Target: native acquire+release >= 3x faster than the ETS twin at 8
# processes. The floor row is two calls of an empty NIF (diag_add), what any
# NIF pair costs.
Code.require_file("support/harness.ex", __DIR__)
Code.require_file("../test/support/test_nif.ex", __DIR__)
Code.require_file("support/concurrency.ex", __DIR__)
Code.require_file("support/scheduler_probe.ex", __DIR__)

defmodule SemaphoreBench do
  # Everything timed lives in this compiled module.
  alias Switchboard.Bench.{Concurrency, Harness}
  alias Switchboard.Semaphore
  alias Switchboard.Semaphore.Pure

  @max 1_000_000

  # discord/semaphore 1.3's acquire/release, as published: one ETS counter
  # per name, no holder records (a dead holder's slot waits for a sweeper).
  defmodule DiscordSemaphore do
    @table :bench_discord_semaphore
    def setup do
      if :ets.whereis(@table) == :undefined do
        :ets.new(@table, [:set, :public, :named_table, {:write_concurrency, true}])
      end
    end

    def acquire(name, max) do
      case :ets.update_counter(@table, name, [{2, 0}, {2, 1, max, max}], {name, 0}) do
        [^max, _] -> false
        _ -> true
      end
    end

    def release(name) do
      :ets.update_counter(@table, name, {2, -1, 0, 0})
      :ok
    end
  end

  def native_loop(_name, 0), do: :ok

  def native_loop(name, n) do
    true = Semaphore.acquire(name, @max)
    Semaphore.release(name)
    native_loop(name, n - 1)
  end

  def pure_loop(_name, 0), do: :ok

  def pure_loop(name, n) do
    true = Pure.acquire(name, @max)
    Pure.release(name)
    pure_loop(name, n - 1)
  end

  def discord_loop(_name, 0), do: :ok

  def discord_loop(name, n) do
    true = DiscordSemaphore.acquire(name, @max)
    DiscordSemaphore.release(name)
    discord_loop(name, n - 1)
  end

  def floor_loop(0), do: :ok

  def floor_loop(n) do
    3 = Switchboard.Test.NIF.diag_add(1, 2)
    3 = Switchboard.Test.NIF.diag_add(1, 2)
    floor_loop(n - 1)
  end

  def run do
    DiscordSemaphore.setup()
    total = Harness.pick(200_000, 60_000)
    rounds = Harness.pick(5, 3)

    {jobs, extra} =
      for procs <- [1, 2, 8, 64], reduce: {[], []} do
        {jobs, extra} ->
          name = {:bench, procs}

          impls = [
            {"Semaphore.Pure (ETS twin)", &pure_loop(name, &1)},
            {"Semaphore (native)", &native_loop(name, &1)},
            {"discord/semaphore algorithm (ETS, no holders)", &discord_loop(name, &1)},
            {"floor: 2 empty NIF calls", &floor_loop/1}
          ]

          results = Concurrency.interleaved(impls, procs, total, rounds)
          0 = Semaphore.count(name)
          0 = Pure.count(name)

          job =
            Concurrency.job(
              "acquire+release, #{procs} process#{if procs > 1, do: "es"}",
              results,
              "Semaphore.Pure (ETS twin)",
              [
                "Semaphore (native)",
                "discord/semaphore algorithm (ETS, no holders)",
                "floor: 2 empty NIF calls"
              ]
            )

          native = Concurrency.median(results, "Semaphore (native)")
          twin = Concurrency.median(results, "Semaphore.Pure (ETS twin)")
          discord = Concurrency.median(results, "discord/semaphore algorithm (ETS, no holders)")
          floor = Concurrency.median(results, "floor: 2 empty NIF calls")

          row = [
            processes: procs,
            "native ns": Float.round(native, 1),
            "twin ns": Float.round(twin, 1),
            "twin / native": Harness.format_ratio(twin / native),
            "discord alg. / native": Harness.format_ratio(discord / native),
            "floor ns (2 NIF calls)": Float.round(floor, 1),
            "target (8 procs)": if(procs == 8, do: ">= 3.00×", else: "")
          ]

          {jobs ++ [job], extra ++ [row]}
      end

    Harness.run_latency("semaphore", jobs, extra ++ kill_rows() ++ probe_rows())
  end

  # Names are any term: a 10 MB one is hashed and copied on a dirty
  # scheduler, so the normal schedulers stay responsive.
  def probe_rows do
    alias Switchboard.Bench.SchedulerProbe
    :persistent_term.put(:semaphore_bench_big_name, {:big, :binary.copy("0123456789", 1_000_000)})
    duration = Harness.pick(2_000, 1_000)

    [
      SchedulerProbe.row(
        "idle",
        SchedulerProbe.measure(fn -> Process.sleep(1) end, duration_ms: 1_000)
      ),
      SchedulerProbe.row(
        "acquire+release on an atom name, in a loop",
        SchedulerProbe.measure(fn -> native_loop(:probe_name, 100) end, duration_ms: duration)
      ),
      SchedulerProbe.row(
        "acquire+release on a 10 MB name, in a loop",
        SchedulerProbe.measure(
          fn -> native_loop(:persistent_term.get(:semaphore_bench_big_name), 1) end,
          duration_ms: duration
        )
      ),
      # A dirty NIF that allocates nothing: when this row is as slow, the
      # machine's cores are busy elsewhere (dirty work competes with the
      # normal schedulers for cores, not for schedulers).
      SchedulerProbe.row(
        "reference: 10 MB FNV-1a dirty CPU NIF, in a loop",
        SchedulerProbe.measure(
          fn ->
            Switchboard.Test.NIF.diag_fnv1a_dirty(
              elem(:persistent_term.get(:semaphore_bench_big_name), 1)
            )
          end,
          duration_ms: duration
        )
      )
    ]
  end

  # A holder is killed; how long until its slot can be taken again, polling
  # count/1: from the kill signal (this includes the VM getting the victim
  # scheduled to act on the signal: on a busy machine, milliseconds), and
  # from the moment a monitor's :DOWN for the victim arrives (the holder is
  # dead: what the semaphore itself adds).
  def kill_rows do
    samples = Harness.pick(300, 60)

    for {label, module} <- [
          {"Semaphore (native)", Semaphore},
          {"Semaphore.Pure (ETS twin)", Pure}
        ] do
      {from_kill, from_down} =
        Enum.unzip(
          for i <- 1..samples do
            name = {:kill_bench, label, i}
            parent = self()

            holder =
              spawn(fn ->
                true = module.acquire(name, 1)
                send(parent, :held)
                Process.sleep(:infinity)
              end)

            receive do
              :held -> :ok
            end

            ref = Process.monitor(holder)
            start = System.monotonic_time(:nanosecond)
            Process.exit(holder, :kill)

            receive do
              {:DOWN, ^ref, :process, ^holder, :killed} -> :ok
            end

            down = System.monotonic_time(:nanosecond)
            wait_free(module, name)
            free = System.monotonic_time(:nanosecond)
            {free - start, free - down}
          end
        )

      from_kill = Enum.sort(from_kill)
      from_down = Enum.sort(from_down)

      [
        "killed holder": label,
        samples: samples,
        "free after kill, p50": Harness.format_ns(Harness.percentile(from_kill, 0.5)),
        p99: Harness.format_ns(Harness.percentile(from_kill, 0.99)),
        "free after :DOWN, p50": Harness.format_ns(Harness.percentile(from_down, 0.5)),
        "p99 ": Harness.format_ns(Harness.percentile(from_down, 0.99)),
        "max ": Harness.format_ns(List.last(from_down)),
        target: "<= 1 ms"
      ]
    end
  end

  # Yields between polls, so a twin's monitor server sharing this
  # scheduler gets to run.
  defp wait_free(module, name) do
    if module.count(name) == 0 do
      :ok
    else
      :erlang.yield()
      wait_free(module, name)
    end
  end
end

SemaphoreBench.run()
