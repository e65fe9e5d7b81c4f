defmodule Switchboard.Bench.Harness do
  @moduledoc false
  # A small benchmark harness (no hex, so no Benchee):
  #
  #   * every job runs a baseline and one or more candidates, in the same run;
  #   * each implementation is warmed up, then sampled many times, each sample
  #     in a fresh process so one sample's garbage does not bill the next;
  #   * after every sample a correctness check runs on the result;
  #   * median, p99 and ops/s are printed beside the baseline's, with the ratio;
  #   * each run writes a Markdown table and a JSON file to bench/results/.
  #
  # Absolute times on shared machines are noise; the ratio is the result.

  defmodule Job do
    @moduledoc false
    defstruct [
      :name,
      :baseline,
      candidates: [],
      setup: nil,
      check: nil,
      ops: 1,
      samples: 30,
      warmup: 3
    ]
  end

  @type impl :: {String.t(), (term() -> term())}

  @doc "True when SWITCHBOARD_BENCH_QUICK is set: fewer samples, smaller sizes."
  def quick?, do: System.get_env("SWITCHBOARD_BENCH_QUICK") not in [nil, "", "0"]

  @doc "Picks `full` normally and `quick` in quick mode."
  def pick(full, quick), do: if(quick?(), do: quick, else: full)

  @doc "Returns once `done?` holds, polling every millisecond."
  def wait_until(done?) do
    unless done?.() do
      Process.sleep(1)
      wait_until(done?)
    end
  end

  @doc """
  Runs `jobs` (a list of keyword lists, see `Job`) and prints and saves the table.

  Job keys: `:name`, `:baseline` ({label, fun}), `:candidates` ([{label, fun}]),
  `:setup` (fn -> input, run before every sample, untimed; its result is passed
  to the implementation), `:check` (fn input, result -> boolean), `:ops`
  (operations per call, for per-op times), `:samples`, `:warmup`.
  """
  def run(suite, jobs, extra_rows \\ []) do
    rows =
      for job_opts <- jobs do
        job = struct!(Job, job_opts)

        job = %{
          job
          | samples: pick(job.samples, max(div(job.samples, 5), 3)),
            warmup: pick(job.warmup, 1)
        }

        IO.write(:stderr, "  #{suite}: #{job.name} ")
        baseline = measure(job, job.baseline)

        candidates =
          for candidate <- job.candidates do
            stats = measure(job, candidate)
            Map.put(stats, :ratio, baseline.median_ns / max(stats.median_ns, 1.0e-9))
          end

        IO.write(:stderr, "\n")

        %{
          job: job.name,
          ops: job.ops,
          baseline: Map.put(baseline, :ratio, 1.0),
          candidates: candidates
        }
      end

    report(suite, rows, extra_rows)
    rows
  end

  @doc """
  Like `run/3`, for jobs whose implementations time their own operations:
  each runner is a zero-arity fun, run once in a fresh process, that returns
  a list of per-operation times in nanoseconds (it does its own setup,
  warm-up and correctness checks, raising on a wrong result). Job keys:
  `:name`, `:baseline` and `:candidates` as `{label, runner}`.
  """
  def run_latency(suite, jobs, extra_rows \\ []) do
    rows =
      for job <- jobs do
        IO.write(:stderr, "  #{suite}: #{job[:name]} ")
        baseline = latency_stats(job[:baseline])

        candidates =
          for candidate <- job[:candidates] do
            stats = latency_stats(candidate)
            Map.put(stats, :ratio, baseline.median_ns / max(stats.median_ns, 1.0e-9))
          end

        IO.write(:stderr, "\n")

        %{
          job: job[:name],
          ops: 1,
          baseline: Map.put(baseline, :ratio, 1.0),
          candidates: candidates
        }
      end

    report(suite, rows, extra_rows)
    rows
  end

  defp latency_stats({label, runner}) do
    task = Task.async(runner)
    times = Task.await(task, :infinity)
    IO.write(:stderr, ".")
    stats(label, times, 1)
  end

  @doc "Times `fun.(input)` for each input, one by one; returns `{times_ns, last_state}`."
  def time_each(inputs, state, fun) do
    Enum.map_reduce(inputs, state, fn input, state ->
      start = System.monotonic_time(:nanosecond)
      state = fun.(state, input)
      {System.monotonic_time(:nanosecond) - start, state}
    end)
  end

  defp measure(%Job{} = job, {label, fun}) do
    for _ <- 1..job.warmup, do: sample(job, fun)
    times = for _ <- 1..job.samples, do: sample(job, fun)
    IO.write(:stderr, ".")
    stats(label, times, job.ops)
  end

  # One timed call in a fresh process; setup and check are outside the timing.
  defp sample(%Job{} = job, fun) do
    parent = self()

    {pid, monitor} =
      spawn_monitor(fn ->
        input = if job.setup, do: job.setup.(), else: nil
        start = System.monotonic_time(:nanosecond)
        result = fun.(input)
        elapsed = System.monotonic_time(:nanosecond) - start

        if job.check && not job.check.(input, result) do
          exit({:check_failed, job.name})
        end

        send(parent, {:sample, self(), elapsed})
      end)

    receive do
      {:sample, ^pid, elapsed} ->
        Process.demonitor(monitor, [:flush])
        elapsed

      {:DOWN, ^monitor, :process, ^pid, reason} ->
        raise "benchmark #{inspect(job.name)} failed: #{inspect(reason)}"
    end
  end

  @doc "Summary statistics over raw nanosecond samples."
  def stats(label, times, ops) do
    sorted = Enum.sort(times)
    median = percentile(sorted, 0.5)

    %{
      label: label,
      samples: length(sorted),
      median_ns: median / ops,
      p99_ns: percentile(sorted, 0.99) / ops,
      ops_per_s: if(median > 0, do: ops * 1.0e9 / median, else: 0.0)
    }
  end

  def percentile([], _), do: 0.0

  def percentile(sorted, q) do
    index = min(length(sorted) - 1, trunc(Float.ceil(q * length(sorted))) - 1)
    Enum.at(sorted, max(index, 0)) * 1.0
  end

  # ---------------------------------------------------------------------------
  # Reporting

  defp report(suite, rows, extra_rows) do
    markdown = markdown(suite, rows, extra_rows)
    IO.puts(markdown)
    File.mkdir_p!("bench/results")
    stamp = Calendar.strftime(DateTime.utc_now(), "%Y%m%dT%H%M%SZ")
    File.write!("bench/results/#{suite}-#{stamp}.md", markdown)

    json =
      Switchboard.Bench.JSON.encode(%{
        suite: suite,
        date: DateTime.to_iso8601(DateTime.utc_now()),
        quick: quick?(),
        machine: machine(),
        jobs: rows,
        extra: Enum.map(extra_rows, &Map.new/1)
      })

    File.write!("bench/results/#{suite}-#{stamp}.json", json)
  end

  def machine do
    %{
      otp: to_string(:erlang.system_info(:otp_release)),
      elixir: System.version(),
      schedulers: System.schedulers_online(),
      cpu: cpu_model()
    }
  end

  defp cpu_model do
    case File.read("/proc/cpuinfo") do
      {:ok, text} ->
        case Regex.run(~r/model name\s*:\s*(.+)/, text) do
          [_, model] -> String.trim(model)
          _ -> "unknown"
        end

      _ ->
        "unknown"
    end
  end

  defp markdown(suite, rows, extra_rows) do
    header = """
    ### #{suite} (#{Date.utc_today()}, #{machine().cpu}, #{System.schedulers_online()} schedulers#{if quick?(), do: ", quick mode", else: ""})

    | job | implementation | median/op | p99/op | ops/s | speed-up vs baseline |
    |---|---|---:|---:|---:|---:|
    """

    body =
      for row <- rows, impl <- [row.baseline | row.candidates], into: "" do
        ratio = if impl == row.baseline, do: "baseline", else: "#{format_ratio(impl.ratio)}"

        "| #{row.job} | #{impl.label} | #{format_ns(impl.median_ns)} | #{format_ns(impl.p99_ns)} | #{format_rate(impl.ops_per_s)} | #{ratio} |\n"
      end

    # Extra rows (figures that are not timing jobs) form one table per run of
    # rows with the same columns.
    extra =
      extra_rows
      |> Enum.chunk_by(fn row -> Enum.map(row, &elem(&1, 0)) end)
      |> Enum.map_join(fn [first | _] = rows ->
        keys = Enum.map(first, &elem(&1, 0))

        "\n| " <>
          Enum.join(keys, " | ") <>
          " |\n|" <>
          String.duplicate("---|", length(keys)) <>
          "\n" <>
          Enum.map_join(rows, "", fn row ->
            "| " <> Enum.map_join(row, " | ", fn {_key, value} -> to_string(value) end) <> " |\n"
          end)
      end)

    header <> body <> extra
  end

  def format_ratio(ratio), do: "#{:erlang.float_to_binary(ratio * 1.0, decimals: 2)}×"

  def format_ns(ns) when ns >= 1.0e6, do: "#{:erlang.float_to_binary(ns / 1.0e6, decimals: 2)} ms"
  def format_ns(ns) when ns >= 1.0e3, do: "#{:erlang.float_to_binary(ns / 1.0e3, decimals: 2)} µs"
  def format_ns(ns), do: "#{:erlang.float_to_binary(ns * 1.0, decimals: 1)} ns"

  def format_rate(rate) when rate >= 1.0e6,
    do: "#{:erlang.float_to_binary(rate / 1.0e6, decimals: 2)} M"

  def format_rate(rate) when rate >= 1.0e3,
    do: "#{:erlang.float_to_binary(rate / 1.0e3, decimals: 1)} k"

  def format_rate(rate), do: "#{:erlang.float_to_binary(rate * 1.0, decimals: 1)}"
end

defmodule Switchboard.Bench.JSON do
  @moduledoc false
  # Just enough JSON for result files (no Jason here).

  def encode(value), do: IO.iodata_to_binary(do_encode(value))

  defp do_encode(nil), do: "null"
  defp do_encode(true), do: "true"
  defp do_encode(false), do: "false"
  defp do_encode(value) when is_atom(value), do: do_encode(Atom.to_string(value))
  defp do_encode(value) when is_integer(value), do: Integer.to_string(value)
  defp do_encode(value) when is_float(value), do: :erlang.float_to_binary(value, [:short])

  defp do_encode(value) when is_binary(value) do
    escaped =
      value
      |> String.replace("\\", "\\\\")
      |> String.replace("\"", "\\\"")
      |> String.replace("\n", "\\n")

    [?", escaped, ?"]
  end

  defp do_encode(value) when is_map(value) do
    pairs = Enum.map(value, fn {k, v} -> [do_encode(to_string(k)), ?:, do_encode(v)] end)
    [?{, Enum.intersperse(pairs, ?,), ?}]
  end

  defp do_encode(value) when is_list(value),
    do: [?[, Enum.intersperse(Enum.map(value, &do_encode/1), ?,), ?]]

  defp do_encode(value) when is_tuple(value), do: do_encode(Tuple.to_list(value))
  defp do_encode(value), do: do_encode(inspect(value))
end
