defmodule Switchboard.Bench.Scaling do
  @moduledoc """
  How throughput scales with schedulers: each job runs with P processes on
  P schedulers (`+S P:P`), for P = 1, 2, 4, ... up to the machine's cores,
  each P in a fresh VM, and the table gives operations per second and the
  scaling against P = 1 from the same run.

  This module lives in `lib/` (not `bench/support/`) so that a release
  carries it: the same command gives the table on any Linux machine that
  has the release copied over, Erlang runtime included, no Elixir or build
  tools needed:

      MIX_ENV=prod mix release --overwrite
      _build/prod/rel/switchboard/bin/switchboard eval 'Switchboard.Bench.Scaling.run()'

  and from a checkout, `MIX_ENV=prod mix run bench/scaling.exs`. Each child
  VM is started the same way as its parent (the release's `bin/switchboard
  eval`, or `mix run`), with `ERL_FLAGS` setting its schedulers.

  Jobs, all on member-list keys `{-role, name, user_id}` (1M by default):

    * `SortedSet.find_index` (native), one shared set;
    * `SortedSet.Pure.find_index` on a set kept in `:persistent_term`
      (shared, never copied);
    * ETS `ordered_set` lookup with `read_concurrency: true`;
    * `SortedSet` add then remove of keys each process owns (a pair is one
      operation), on the shared set;
    * `Fanout.send` of one small message to 100 receivers (its own) per
      process; an operation is one send call;
    * one caller's `Fanout.send` of a 1 KB map to `size / 10` receivers
      (100,000 by default) that take it (a receive loop), inline (split
      over the schedulers) and with `offload: true` + `sync/0` (split over
      the sender threads; each child VM gets `SWITCHBOARD_FANOUT_THREADS`
      = P); an operation is one fan-out, timed until every receiver has
      taken it, so deliveries/s = ops/s x receivers. Only one process
      works: the others are the fan-out's own shares and threads.

  Options (keyword list, or environment variables for `bench/scaling.exs`):
  `:size` (`SCALING_SIZE`, items, default 1,000,000, or 100,000 when
  `SWITCHBOARD_BENCH_QUICK` is set), `:seconds`
  (`SCALING_SECONDS`, per job and P, default 2), `:rounds` (`SCALING_ROUNDS`,
  passes over every P, interleaved, reporting medians; default 1), `:max_schedulers`
  (`SCALING_MAX_SCHEDULERS`, default the cores the machine has), `:jobs`
  (`SCALING_JOBS`, comma separated names, default all),
  `:processes_per_scheduler` (`SCALING_PROCESSES_PER_SCHEDULER`, default 1:
  more processes than schedulers, to see a job when they queue for their
  schedulers as well), `:out` (`SCALING_OUT`, directory for the JSON,
  default `bench/results`).

  Throughput is wall-clock (what scaling is about); CPU time per operation
  (`:erlang.statistics(:runtime)`, busy-waiting schedulers turned off) is
  printed beside it. The table names the machine it comes from.
  """

  alias Switchboard.{Fanout, SortedSet}
  alias Switchboard.SortedSet.Pure

  @jobs [
    {"sorted_set_find_index", "SortedSet.find_index (native)"},
    {"pure_find_index", "SortedSet.Pure.find_index (persistent_term)"},
    {"ets_lookup", "ETS ordered_set lookup (read_concurrency)"},
    {"sorted_set_add_remove", "SortedSet add+remove, distinct keys per process"},
    {"fanout_send", "Fanout.send, 1 message to 100 receivers"},
    {"fanout_parallel", "one Fanout.send of a 1 KB map to size/10 receivers, until taken"},
    {"fanout_parallel_offload", "the same, offload: true + sync (sender threads)"}
  ]
  @result_tag "SWITCHBOARD_SCALING_RESULT "
  @check_every 64
  @parallel_waiter :switchboard_scaling_parallel_fanout

  @doc "Runs every job at 1, 2, 4, ... schedulers; prints the table and writes JSON."
  def run(opts \\ []) do
    opts = options(opts)
    counts = scheduler_counts(opts[:max_schedulers])
    machine = machine()
    IO.puts(:stderr, "scaling: #{inspect(counts)} schedulers, #{opts[:seconds]} s per job")

    # Rounds go through every P in turn (1, 2, 4, ... then again), so a
    # burst of load from the rest of the machine falls on all of them alike;
    # each figure is the median over the rounds.
    runs =
      for round <- 1..opts[:rounds], count <- counts do
        IO.puts(:stderr, "scaling: round #{round}, starting a VM with +S #{count}")
        {count, run_child(count, opts)}
      end

    results = for count <- counts, do: {count, median_jobs(for {^count, jobs} <- runs, do: jobs)}

    table = table(results, opts, machine)
    IO.puts(table)
    write_json(results, opts, machine)
    :ok
  end

  @doc false
  # Runs in a child VM: every job with as many processes as schedulers.
  def child(encoded_opts) do
    opts = encoded_opts |> Base.decode64!() |> :erlang.binary_to_term()
    processes = System.schedulers_online() * Keyword.get(opts, :processes_per_scheduler, 1)
    keys = keys(opts[:size])

    results =
      for {name, _label} <- @jobs, name in opts[:jobs] do
        {name, measure(name, keys, processes, opts[:seconds])}
      end

    IO.puts(@result_tag <> Base.encode64(:erlang.term_to_binary(Map.new(results))))
  end

  # ---------------------------------------------------------------------------
  # Options and child VMs

  defp options(opts) do
    env = fn name, default -> System.get_env(name, default) end
    cores = :erlang.system_info(:logical_processors_available)
    cores = if is_integer(cores), do: cores, else: System.schedulers_online()

    # Quick mode (SWITCHBOARD_BENCH_QUICK, as `make bench BENCH_QUICK=1`
    # and bench/all.exs use it): 100k items.
    quick? = env.("SWITCHBOARD_BENCH_QUICK", "") not in ["", "0"]

    defaults = [
      size: String.to_integer(env.("SCALING_SIZE", if(quick?, do: "100000", else: "1000000"))),
      seconds: String.to_integer(env.("SCALING_SECONDS", "2")),
      rounds: String.to_integer(env.("SCALING_ROUNDS", "1")),
      max_schedulers: String.to_integer(env.("SCALING_MAX_SCHEDULERS", Integer.to_string(cores))),
      jobs: env.("SCALING_JOBS", Enum.map_join(@jobs, ",", &elem(&1, 0))) |> String.split(","),
      processes_per_scheduler: String.to_integer(env.("SCALING_PROCESSES_PER_SCHEDULER", "1")),
      out: env.("SCALING_OUT", "bench/results")
    ]

    Keyword.merge(defaults, opts)
  end

  # Per job, the median of each figure over the rounds' results.
  defp median_jobs([jobs | _] = rounds) do
    Map.new(jobs, fn {name, job} ->
      figures = for %{^name => round} <- rounds, do: round
      median = fn key -> figures |> Enum.map(&Map.fetch!(&1, key)) |> median() end

      {name,
       %{
         job
         | ops: median.(:ops),
           ops_per_s: median.(:ops_per_s),
           cpu_ns_per_op: median.(:cpu_ns_per_op)
       }}
    end)
  end

  defp median(values) do
    sorted = Enum.sort(values)
    count = length(sorted)
    middle = div(count, 2)

    if rem(count, 2) == 1,
      do: Enum.at(sorted, middle),
      else: (Enum.at(sorted, middle - 1) + Enum.at(sorted, middle)) / 2
  end

  defp scheduler_counts(max) do
    powers = Stream.iterate(1, &(&1 * 2)) |> Enum.take_while(&(&1 <= max))
    Enum.uniq(powers ++ [max])
  end

  defp run_child(count, opts) do
    child_opts = Keyword.take(opts, [:size, :seconds, :jobs, :processes_per_scheduler])
    encoded = child_opts |> :erlang.term_to_binary() |> Base.encode64()
    expression = "Switchboard.Bench.Scaling.child(\"#{encoded}\")"

    flags =
      "+S #{count}:#{count} +SDcpu #{count}:#{count} +sbwt none +sbwtdcpu none +sbwtdio none"

    {command, args} = child_command(expression)

    env = [
      {"ERL_FLAGS", String.trim("#{System.get_env("ERL_FLAGS", "")} #{flags}")},
      # One sender thread per scheduler, for the parallel fan-out jobs.
      {"SWITCHBOARD_FANOUT_THREADS", Integer.to_string(count)}
    ]

    {output, status} = System.cmd(command, args, env: env, stderr_to_stdout: true)

    with 0 <- status,
         [line | _] <-
           for(l <- String.split(output, "\n"), String.starts_with?(l, @result_tag), do: l) do
      jobs =
        line
        |> String.replace_prefix(@result_tag, "")
        |> Base.decode64!()
        |> :erlang.binary_to_term()

      # ERL_FLAGS reached the child: as many processes as schedulers asked.
      for {name, %{processes: processes}} <- jobs,
          processes != count * opts[:processes_per_scheduler] do
        raise "the +S #{count} VM ran #{name} with #{processes} schedulers"
      end

      jobs
    else
      _ -> raise "the +S #{count} VM failed (exit #{status}):\n#{output}"
    end
  end

  # The same way in as the parent: the release's script, or mix.
  defp child_command(expression) do
    case {System.get_env("RELEASE_ROOT"), System.get_env("RELEASE_NAME")} do
      {root, name} when is_binary(root) and is_binary(name) ->
        {Path.join([root, "bin", name]), ["eval", expression]}

      _ ->
        {System.find_executable("mix") || raise("mix not found"),
         ["run", "--no-compile", "--no-start", "-e", expression]}
    end
  end

  # ---------------------------------------------------------------------------
  # Jobs

  @doc false
  def key(role, name_rank, user_id) do
    {-role, "member-" <> String.pad_leading(Integer.to_string(name_rank), 8, "0"), user_id}
  end

  @doc false
  def keys(size) do
    for id <- 1..size, do: key(rem(id * 7, 20) + 1, rem(id * 104_729, size * 3), id)
  end

  defp measure(name, keys, processes, seconds) do
    {worker, cleanup} = setup(name, keys, processes)
    # Warm-up, untimed: caches, code, the set's reader slots.
    run_workers(worker, processes, 200)
    :erlang.garbage_collect()
    {_, _} = :erlang.statistics(:runtime)
    {ops, wall_ns} = run_workers(worker, processes, round(seconds * 1000))
    {_, cpu_ms} = :erlang.statistics(:runtime)
    cleanup.()

    %{
      processes: processes,
      ops: ops,
      ops_per_s: ops / (wall_ns / 1.0e9),
      cpu_ns_per_op: cpu_ms * 1.0e6 / max(ops, 1)
    }
  end

  # {worker, cleanup}: worker.(index, stop) loops until `stop` is set and
  # returns the operations it did.
  defp setup("sorted_set_find_index", keys, _processes) do
    set = SortedSet.from_enumerable(keys)
    sample = sample(keys)
    {fn _, stop -> loop(stop, sample, &SortedSet.find_index(set, &1)) end, fn -> :ok end}
  end

  defp setup("pure_find_index", keys, _processes) do
    :persistent_term.put({__MODULE__, :pure}, Pure.from_enumerable(keys))
    sample = sample(keys)

    worker = fn _, stop ->
      set = :persistent_term.get({__MODULE__, :pure})
      loop(stop, sample, &Pure.find_index(set, &1))
    end

    {worker, fn -> :persistent_term.erase({__MODULE__, :pure}) end}
  end

  defp setup("ets_lookup", keys, _processes) do
    table = :ets.new(__MODULE__, [:ordered_set, :public, read_concurrency: true])
    :ets.insert(table, Enum.map(keys, &{&1}))
    sample = sample(keys)
    {fn _, stop -> loop(stop, sample, &:ets.lookup(table, &1)) end, fn -> :ets.delete(table) end}
  end

  defp setup("sorted_set_add_remove", keys, _processes) do
    set = SortedSet.from_enumerable(keys)

    worker = fn index, stop ->
      # Negative user ids are absent from the set and each process's own;
      # the roles and names spread them through the set.
      own =
        List.to_tuple(for i <- 1..1000, do: key(rem(i, 20) + 1, i * 3 + 1, -(index * 1000 + i)))

      loop(stop, Tuple.to_list(own), fn key ->
        SortedSet.add(set, key)
        SortedSet.remove(set, key)
      end)
    end

    {worker, fn -> :ok end}
  end

  defp setup("fanout_send", _keys, _processes) do
    worker = fn _, stop ->
      receivers = for _ <- 1..100, do: spawn_link(&drain/0)
      message = {:presence_update, 123_456_789, :online}
      ops = loop(stop, [message], &Fanout.send(receivers, &1))
      Enum.each(receivers, &(Process.unlink(&1) && Process.exit(&1, :kill)))
      ops
    end

    {worker, fn -> :ok end}
  end

  defp setup("fanout_parallel", keys, _processes), do: parallel_fanout(length(keys), [])

  defp setup("fanout_parallel_offload", keys, _processes) do
    # An offloaded fan-out names the caller's Fanout.Sender (the child VM
    # starts without the application).
    {:ok, _} = Application.ensure_all_started(:switchboard)
    parallel_fanout(length(keys), offload: true)
  end

  defp parallel_fanout(size, opts) do
    count = max(div(size, 10), 1)
    taken = :atomics.new(2, [])
    receivers = for _ <- 1..count, do: spawn(fn -> take(taken) end)
    message = Map.new(1..24, fn i -> {"key#{i}", String.duplicate(<<?a + rem(i, 26)>>, 20)} end)

    # Worker 1 fans out (registered, for the receivers' word); the others
    # have nothing to do.
    worker = fn
      1, stop ->
        Process.register(self(), @parallel_waiter)
        ops = fan_out_until(stop, receivers, message, opts, taken, 0)
        Process.unregister(@parallel_waiter)
        ops

      _, _stop ->
        0
    end

    {worker, fn -> Enum.each(receivers, &Process.exit(&1, :kill)) end}
  end

  # One fan-out at a time, each until every receiver has taken it.
  defp fan_out_until(stop, receivers, message, opts, taken, ops) do
    if :atomics.get(stop, 1) == 1 do
      ops
    else
      :atomics.put(taken, 1, 0)
      :atomics.put(taken, 2, length(receivers))
      Fanout.send(receivers, message, opts)
      if opts[:offload], do: Fanout.sync()

      receive do
        :all_taken -> :ok
      end

      fan_out_until(stop, receivers, message, opts, taken, ops + 1)
    end
  end

  # A receiver: counts what it takes; the one that brings the count to the
  # target tells the registered fan-out worker.
  defp take(taken) do
    receive do
      _ ->
        if :atomics.add_get(taken, 1, 1) == :atomics.get(taken, 2),
          do: send(@parallel_waiter, :all_taken)

        take(taken)
    end
  end

  defp drain do
    receive do
      _ -> drain()
    end
  end

  defp sample(keys), do: keys |> Enum.take_random(4096)

  # Applies `fun` to the items of `items` in turn, checking `stop` every
  # @check_every calls; returns the calls made.
  defp loop(stop, items, fun), do: loop(stop, items, items, fun, 0)

  defp loop(stop, [], all, fun, ops), do: loop(stop, all, all, fun, ops)

  defp loop(stop, [item | rest], all, fun, ops) do
    fun.(item)
    ops = ops + 1

    if rem(ops, @check_every) == 0 and :atomics.get(stop, 1) == 1 do
      ops
    else
      loop(stop, rest, all, fun, ops)
    end
  end

  # Starts `processes` workers together, stops them after `ms`; returns the
  # total operations and the wall time from start to the last one's end.
  defp run_workers(worker, processes, ms) do
    stop = :atomics.new(1, [])
    parent = self()

    pids =
      for index <- 1..processes do
        spawn_link(fn ->
          receive do
            :go -> send(parent, {:done, self(), worker.(index, stop)})
          end
        end)
      end

    Process.sleep(5)
    start = System.monotonic_time(:nanosecond)
    Enum.each(pids, &send(&1, :go))
    Process.sleep(ms)
    :atomics.put(stop, 1, 1)
    ops = Enum.sum(for pid <- pids, do: receive(do: ({:done, ^pid, ops} -> ops)))
    {ops, System.monotonic_time(:nanosecond) - start}
  end

  # ---------------------------------------------------------------------------
  # Reporting

  defp table(results, opts, machine) do
    counts = Enum.map(results, &elem(&1, 0))

    header =
      "| job | " <>
        Enum.map_join(counts, " | ", &"+S #{&1} ops/s (x vs 1) | CPU ns/op") <>
        " |\n|---|" <> String.duplicate("---:|---:|", length(counts))

    rows =
      for {name, label} <- @jobs, name in opts[:jobs] do
        base = results |> hd() |> elem(1) |> Map.fetch!(name)

        cells =
          Enum.map_join(results, " | ", fn {_count, jobs} ->
            job = Map.fetch!(jobs, name)

            "#{rate(job.ops_per_s)} (#{ratio(job.ops_per_s / base.ops_per_s)}) | #{round(job.cpu_ns_per_op)}"
          end)

        "| #{label} | #{cells} |"
      end

    """
    #### Scaling: #{processes_label(opts[:processes_per_scheduler])} processes on P schedulers (#{machine.description}, #{machine.date})

    #{opts[:size]} items, #{opts[:seconds]} s per job and P, each P in a fresh VM; median of #{opts[:rounds]} round(s).

    #{header}
    #{Enum.join(rows, "\n")}
    """
  end

  defp processes_label(1), do: "P"
  defp processes_label(per), do: "#{per}P"

  defp write_json(results, opts, machine) do
    File.mkdir_p!(opts[:out])
    stamp = Calendar.strftime(DateTime.utc_now(), "%Y%m%dT%H%M%SZ")
    path = Path.join(opts[:out], "scaling-#{stamp}.json")

    data = %{
      suite: "scaling",
      machine: machine,
      size: opts[:size],
      seconds: opts[:seconds],
      rounds: opts[:rounds],
      runs:
        for {count, jobs} <- results do
          %{schedulers: count, jobs: for({name, job} <- jobs, do: Map.put(job, :job, name))}
        end
    }

    File.write!(path, json(data))
    IO.puts(:stderr, "scaling: wrote #{path}")
  end

  defp machine do
    cpu =
      with {:ok, text} <- File.read("/proc/cpuinfo"),
           [_, model] <- Regex.run(~r/model name\s*:\s*(.+)/, text) do
        String.trim(model)
      else
        _ -> to_string(:erlang.system_info(:system_architecture))
      end

    cores = :erlang.system_info(:logical_processors_available)
    {:ok, host} = :inet.gethostname()

    %{
      cpu: cpu,
      cores: cores,
      host: to_string(host),
      otp: System.otp_release(),
      elixir: System.version(),
      date: Date.to_iso8601(Date.utc_today()),
      description: "#{cpu}, #{cores} cores, OTP #{System.otp_release()}"
    }
  end

  defp rate(value) when value >= 1.0e6, do: "#{Float.round(value / 1.0e6, 2)} M"
  defp rate(value) when value >= 1.0e3, do: "#{Float.round(value / 1.0e3, 1)} k"
  defp rate(value), do: "#{Float.round(value * 1.0, 1)}"
  defp ratio(value), do: "#{:erlang.float_to_binary(value, decimals: 2)}x"

  # Just enough JSON for the result file (maps, lists, numbers, strings).
  defp json(value) when is_map(value) do
    [
      "{",
      value
      |> Enum.map(fn {k, v} -> [json(to_string(k)), ":", json(v)] end)
      |> Enum.intersperse(","),
      "}"
    ]
  end

  defp json(value) when is_list(value),
    do: ["[", value |> Enum.map(&json/1) |> Enum.intersperse(","), "]"]

  defp json(value) when is_binary(value),
    do: [?", value |> String.replace("\\", "\\\\") |> String.replace("\"", "\\\""), ?"]

  defp json(value) when is_integer(value), do: Integer.to_string(value)
  defp json(value) when is_float(value), do: :erlang.float_to_binary(value, [:short])
  defp json(value) when is_atom(value), do: json(Atom.to_string(value))
end
