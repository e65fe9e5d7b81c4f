defmodule Switchboard.Metrics.Pure do
  @moduledoc """
  The pure-Elixir twin of `Switchboard.Metrics`: counters and histograms in
  one ETS table per scheduler (discord/instruments' technique: a process
  writes the table of the scheduler it runs on, so schedulers rarely touch
  the same table), gauges in one shared table. Same contract
  (`Switchboard.Metrics.Behaviour`), same log-linear buckets and quantile
  rule as the native module, so both report the same numbers for the same
  values.

  Rows: `{{:c, name, tags}, value}` for counters;
  `{{:h, name, tags}, count, sum, min, max}` and
  `{{:b, name, tags, bucket}, count}` for histograms, where `tags` are as
  given (they are sorted when a snapshot merges the tables).

  The tables belong to this module's server, started by the application.

  ## Examples

      iex> Switchboard.Metrics.Pure.increment("doc.pure", 2)
      :ok
      iex> Switchboard.Metrics.Pure.snapshot().counters[{"doc.pure", []}]
      2
      iex> Switchboard.Metrics.Pure.histogram("doc.pure", :slow)
      ** (ArgumentError) expected a non-negative number for a histogram, got: :slow
  """
  use Switchboard.Metrics.Behaviour
  use GenServer
  import Bitwise

  import Switchboard.Metrics.Behaviour,
    only: [is_increment: 1, is_gauge_value: 1, is_histogram_value: 1]

  alias Switchboard.Metrics.Behaviour

  @gauges :switchboard_metrics_pure_gauges
  @tables_key {__MODULE__, :tables}

  @impl Behaviour
  def increment(name, value \\ 1, tags \\ [])

  def increment(name, value, tags) when is_increment(value) do
    check!(name, tags)
    key = {:c, name, tags}
    :ets.update_counter(table(), key, value, {key, 0})
    :ok
  end

  def increment(_name, value, _tags), do: Behaviour.bad_value!(:counter, value)

  @impl Behaviour
  def gauge(name, value, tags \\ [])

  def gauge(name, value, tags) when is_gauge_value(value) do
    check!(name, tags)
    :ets.insert(@gauges, {{name, Enum.sort(tags)}, value})
    :ok
  end

  def gauge(_name, value, _tags), do: Behaviour.bad_value!(:gauge, value)

  @impl Behaviour
  def histogram(name, value, tags \\ [])

  def histogram(name, value, tags) when is_histogram_value(value) do
    check!(name, tags)
    value = if is_float(value), do: min(round(value), 0xFFFF_FFFF_FFFF_FFFF), else: value
    table = table()
    key = {:h, name, tags}
    bucket = {:b, name, tags, bucket(value)}
    :ets.update_counter(table, bucket, 1, {bucket, 0})

    case :ets.update_counter(table, key, [{2, 1}, {3, value}], {key, 0, 0, value, value}) do
      [1, _] -> :ok
      _ -> extremes(table, key, value)
    end

    :ok
  end

  def histogram(_name, value, _tags), do: Behaviour.bad_value!(:histogram, value)

  # min and max: a read, and a guarded replace only when `value` is a new
  # extreme (rare once a histogram has seen its range).
  defp extremes(table, key, value) do
    [{_, _, _, low, high}] = :ets.lookup(table, key)
    if value < low, do: replace_if(table, key, 4, :<, value)
    if value > high, do: replace_if(table, key, 5, :>, value)
  end

  defp replace_if(table, key, position, operator, value) do
    head = {:"$1", :"$2", :"$3", :"$4", :"$5"}
    current = elem(head, position - 1)
    replaced = head |> put_elem(0, {:const, key}) |> put_elem(position - 1, value)

    :ets.select_replace(table, [
      {put_elem(head, 0, key), [{operator, value, current}], [{replaced}]}
    ])
  end

  @impl Behaviour
  def snapshot(opts \\ []) do
    {bounds, values} = Behaviour.snapshot_options!(opts)
    rows = Enum.flat_map(Tuple.to_list(tables()), &:ets.tab2list/1)

    counters =
      for {{:c, name, tags}, value} <- rows, reduce: %{} do
        acc -> Map.update(acc, {name, Enum.sort(tags)}, value, &(&1 + value))
      end

    gauges = Map.new(:ets.tab2list(@gauges))

    totals =
      for {{:h, name, tags}, count, sum, low, high} <- rows, reduce: %{} do
        acc ->
          Map.update(acc, {name, Enum.sort(tags)}, {count, sum, low, high}, fn {c, s, l, h} ->
            {c + count, s + sum, min(l, low), max(h, high)}
          end)
      end

    buckets =
      for {{:b, name, tags, bucket}, count} <- rows, reduce: %{} do
        acc ->
          Map.update(acc, {name, Enum.sort(tags)}, %{bucket => count}, fn counts ->
            Map.update(counts, bucket, count, &(&1 + count))
          end)
      end

    histograms =
      for {key, totals} <- totals,
          counts = Map.get(buckets, key, %{}),
          counts != %{},
          into: %{} do
        {key, summary(totals, counts |> Enum.sort() |> drop_empty(), bounds, values)}
      end

    %{counters: counters, gauges: gauges, histograms: histograms}
  end

  defp drop_empty(counts), do: Enum.reject(counts, fn {_, count} -> count == 0 end)

  # The bucket counts decide the count (a record's bucket is written first),
  # as in the native module.
  defp summary({_count, sum, low, high}, counts, bounds, values) do
    count = Enum.reduce(counts, 0, fn {_, n}, acc -> acc + n end)

    base = %{
      count: count,
      min: low,
      max: high,
      mean: sum / count,
      p50: quantile(counts, count, 0.5, low, high),
      p90: quantile(counts, count, 0.9, low, high),
      p99: quantile(counts, count, 0.99, low, high),
      p999: quantile(counts, count, 0.999, low, high)
    }

    base
    |> with_values(values, counts, sum)
    |> with_buckets(bounds, counts, sum)
  end

  defp with_values(summary, false, _counts, _sum), do: summary

  defp with_values(summary, true, counts, sum) do
    Map.merge(summary, %{sum: sum, values: for({b, n} <- counts, do: {midpoint(b), n})})
  end

  defp with_buckets(summary, [], _counts, _sum), do: summary

  defp with_buckets(summary, bounds, counts, sum) do
    cumulative =
      for bound <- bounds do
        last = bucket(bound)
        {bound, for({b, n} <- counts, b <= last, reduce: 0, do: (acc -> acc + n))}
      end

    Map.merge(summary, %{sum: sum, buckets: cumulative})
  end

  defp quantile(counts, count, q, low, high) do
    rank = min(max(ceil_int(q * count), 1), count)

    Enum.reduce_while(counts, 0, fn {bucket, n}, seen ->
      if seen + n >= rank, do: {:halt, {:found, bucket}}, else: {:cont, seen + n}
    end)
    |> case do
      {:found, bucket} -> bucket |> midpoint() |> max(low) |> min(high)
      _ -> high
    end
  end

  defp ceil_int(x) do
    t = trunc(x)
    if x > t, do: t + 1, else: t
  end

  ## The log-linear buckets (see Switchboard.Metrics.Behaviour): values below
  ## 256 have their own bucket; above, each power of two has 128.

  @doc false
  def bucket(value) when value < 256, do: value

  def bucket(value) do
    top = top_bit(value)
    256 + (top - 8) * 128 + (value >>> (top - 7)) - 128
  end

  defp top_bit(value) do
    guess = trunc(:math.log2(value))

    cond do
      1 <<< guess > value -> guess - 1
      1 <<< (guess + 1) <= value -> guess + 1
      true -> guess
    end
  end

  defp midpoint(bucket) when bucket < 256, do: bucket

  defp midpoint(bucket) do
    shift = div(bucket - 256, 128) + 1
    lower = (128 + rem(bucket - 256, 128)) <<< shift
    lower + div((1 <<< shift) - 1, 2)
  end

  ## Checks (the native module makes the same ones in C++)

  defp check!(name, tags) do
    unless is_atom(name) or (is_binary(name) and byte_size(name) <= 255) do
      Behaviour.bad_name!(name)
    end

    if tags != [] and not valid_tags?(tags, [], 0), do: Behaviour.bad_tags!(tags)
  end

  defp valid_tags?([], _keys, _count), do: true
  defp valid_tags?(_tags, _keys, 32), do: false

  defp valid_tags?([{key, value} | rest], keys, count) when is_atom(key) do
    valid_tag_value?(value) and key not in keys and valid_tags?(rest, [key | keys], count + 1)
  end

  defp valid_tags?(_tags, _keys, _count), do: false

  defp valid_tag_value?(value) when is_atom(value) or is_increment(value), do: true
  defp valid_tag_value?(value) when is_binary(value), do: byte_size(value) <= 255
  defp valid_tag_value?(_value), do: false

  ## Tables

  defp table do
    elem(tables(), :erlang.system_info(:scheduler_id) - 1)
  end

  defp tables, do: :persistent_term.get(@tables_key)

  @doc false
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc false
  def child_spec(opts), do: %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}}

  @impl GenServer
  def init(_opts) do
    options = [:set, :public, write_concurrency: true]
    tables = for _ <- 1..:erlang.system_info(:schedulers), do: :ets.new(__MODULE__, options)
    :persistent_term.put(@tables_key, List.to_tuple(tables))

    :ets.new(@gauges, [
      :named_table,
      :set,
      :public,
      write_concurrency: true,
      read_concurrency: true
    ])

    {:ok, nil}
  end
end
