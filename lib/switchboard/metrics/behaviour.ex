defmodule Switchboard.Metrics.Behaviour do
  @moduledoc """
  The contract shared by `Switchboard.Metrics` (native) and
  `Switchboard.Metrics.Pure` (ETS), and by the reporters that read either.

  A metric is keyed by its kind (counter, gauge or histogram), its name and
  its tags. Names are atoms or strings of at most 255 bytes; tags are a
  keyword list of at most 32 distinct atom keys whose values are atoms,
  strings of at most 255 bytes or integers. Tags given in any order name the
  same metric; `snapshot/0` reports them sorted by key.

    * counters add integers (64-bit) and never reset: a reporter that sends
      deltas subtracts the value it last sent, so no increment is lost
      across a flush;
    * gauges keep the last number set;
    * histograms record non-negative numbers (floats are rounded to the
      nearest integer) in log-linear buckets: every quantile is within 1% of
      the exact one (values below 256 are exact), and count, min, max and
      mean are exact.

  `use Switchboard.Metrics.Behaviour` defines `measure/3` and the argument
  guards on top of the callbacks, so both implementations share them, with
  one wording for errors.
  """

  @type name :: atom() | String.t()
  @type tags :: [{atom(), atom() | String.t() | integer()}]
  @type key :: {name(), tags()}
  @type histogram_summary :: %{
          count: non_neg_integer(),
          min: non_neg_integer(),
          max: non_neg_integer(),
          mean: float(),
          p50: non_neg_integer(),
          p90: non_neg_integer(),
          p99: non_neg_integer(),
          p999: non_neg_integer()
        }
  @type snapshot :: %{
          counters: %{key() => integer()},
          gauges: %{key() => number()},
          histograms: %{key() => histogram_summary()}
        }

  @doc "Adds `value` to a counter."
  @callback increment(name(), value :: integer(), tags()) :: :ok
  @doc "Sets a gauge."
  @callback gauge(name(), value :: number(), tags()) :: :ok
  @doc "Records a value in a histogram."
  @callback histogram(name(), value :: number(), tags()) :: :ok
  @doc """
  Every metric. With `buckets: bounds` (non-negative integers), each
  histogram also has `:sum` (exact) and `:buckets`, `[{bound, count}]` with
  the count of values at most `bound` (exact below 256, within a bucket's
  width, 1/128, above). With `values: true`, each histogram also has `:sum`
  and `:values`, `[{midpoint, count}]` for every non-empty bucket.
  """
  @callback snapshot(opts :: [buckets: [non_neg_integer()], values: boolean()]) :: snapshot()

  @int64_min -0x8000_0000_0000_0000
  @int64_max 0x7FFF_FFFF_FFFF_FFFF

  @doc "An integer a counter can add (64-bit)."
  defguard is_increment(value)
           when is_integer(value) and value >= @int64_min and value <= @int64_max

  @doc "A number a gauge can hold (an integer of 64 bits or a float)."
  defguard is_gauge_value(value) when is_increment(value) or is_float(value)

  @doc "A value a histogram can record."
  defguard is_histogram_value(value)
           when (is_integer(value) and value >= 0 and value <= 0xFFFF_FFFF_FFFF_FFFF) or
                  (is_float(value) and value >= 0)

  @doc "Raises the `ArgumentError` for a bad name."
  @spec bad_name!(term()) :: no_return()
  def bad_name!(name) do
    raise ArgumentError,
          "expected a metric name (an atom or a string of at most 255 bytes), got: " <>
            inspect(name)
  end

  @doc "Raises the `ArgumentError` for bad tags."
  @spec bad_tags!(term()) :: no_return()
  def bad_tags!(tags) do
    raise ArgumentError,
          "expected tags as a keyword list of at most 32 distinct atom keys with atom, " <>
            "string (at most 255 bytes) or integer values, got: " <> inspect(tags)
  end

  @doc "Raises the `ArgumentError` for a bad value of a `kind` of metric."
  @spec bad_value!(:counter | :gauge | :histogram, term()) :: no_return()
  def bad_value!(kind, value) do
    expected =
      case kind do
        :counter -> "an integer (64-bit) to add to a counter"
        :gauge -> "a number (an integer of 64 bits or a float) for a gauge"
        :histogram -> "a non-negative number for a histogram"
      end

    raise ArgumentError, "expected #{expected}, got: #{inspect(value)}"
  end

  @doc "The `:buckets` and `:values` options of `snapshot/1`, checked."
  @spec snapshot_options!(keyword()) :: {[non_neg_integer()], boolean()}
  def snapshot_options!(opts) do
    values = Keyword.get(opts, :values, false)

    unless is_boolean(values) do
      raise ArgumentError, "expected :values to be a boolean, got: #{inspect(values)}"
    end

    {bucket_bounds!(opts), values}
  end

  defp bucket_bounds!(opts) do
    bounds = Keyword.get(opts, :buckets, [])

    unless is_list(bounds) and length(bounds) <= 1024 and
             Enum.all?(bounds, &(is_integer(&1) and &1 >= 0 and &1 <= 0xFFFF_FFFF_FFFF_FFFF)) do
      raise ArgumentError,
            "expected :buckets to be a list of at most 1024 non-negative integers, got: " <>
              inspect(bounds)
    end

    bounds
  end

  @doc "Raises the `ArgumentError` for `reason` (`:bad_name`, `:bad_tags`, `:bad_value`)."
  @spec raise_for!(:bad_name | :bad_tags | :bad_value, atom(), term(), term(), term()) ::
          no_return()
  def raise_for!(:bad_name, _kind, name, _value, _tags), do: bad_name!(name)
  def raise_for!(:bad_tags, _kind, _name, _value, tags), do: bad_tags!(tags)
  def raise_for!(:bad_value, kind, _name, value, _tags), do: bad_value!(kind, value)

  defmacro __using__(_opts) do
    quote do
      @behaviour Switchboard.Metrics.Behaviour

      @doc """
      Runs `fun`, records how long it took in microseconds in the histogram
      `name`, and returns its result.
      """
      @spec measure(
              Switchboard.Metrics.Behaviour.name(),
              Switchboard.Metrics.Behaviour.tags(),
              (() -> result)
            ) ::
              result
            when result: term()
      def measure(name, tags \\ [], fun)

      def measure(name, tags, fun) when is_function(fun, 0) do
        start = System.monotonic_time()
        result = fun.()
        elapsed = System.monotonic_time() - start
        histogram(name, System.convert_time_unit(elapsed, :native, :microsecond), tags)
        result
      end

      def measure(_name, _tags, fun), do: Switchboard.Semaphore.Behaviour.bad_fun!(fun)
    end
  end
end
