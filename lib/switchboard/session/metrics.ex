defmodule Switchboard.Session.Metrics do
  @moduledoc """
  Frame counts and a latency histogram shared by many processes.

  Backed by one `:counters` array (write-concurrent), so recording costs an
  atomic add and no message. Latencies are kept in microseconds in
  log-linear buckets (exact below 16 µs, then 8 buckets per power of two:
  at most 12.5% wide), enough for p50/p99/p99.9 of a run.
  """

  import Bitwise

  defstruct [:ref]

  @type t :: %__MODULE__{ref: :counters.counters_ref()}

  @buckets 16 + 8 * 40
  @event_frames 1
  @list_frames 2
  @first_bucket 3
  # One frame in this many (by the session's sequence number) has its
  # latency taken: reading the clock costs more than the rest of the
  # bookkeeping, and a quarter of millions of frames is plenty for p99.9.
  @sample_every 4

  @doc """
  Whether the frame numbered `seq` has its latency taken: one in
  #{@sample_every} (a guard; `record/4` takes the same ones).
  """
  defguard sampled?(seq) when rem(seq, @sample_every) == 0

  @doc "A new, zeroed set of metrics."
  @spec new() :: t()
  def new, do: %__MODULE__{ref: :counters.new(@first_bucket + @buckets, [:write_concurrency])}

  @doc """
  Counts one frame, the session's frame number `seq`, published at
  `published_us` (`System.system_time(:microsecond)`); `event?` tells event
  frames from member-list updates. One frame in #{@sample_every} also has its latency
  put in the histogram.
  """
  @spec record(t(), integer(), boolean(), non_neg_integer()) :: :ok
  def record(%__MODULE__{ref: ref}, published_us, event?, seq) do
    :counters.add(ref, if(event?, do: @event_frames, else: @list_frames), 1)

    if sampled?(seq) do
      latency = :erlang.system_time(:microsecond) - published_us
      :counters.add(ref, @first_bucket + bucket(latency), 1)
    end

    :ok
  end

  @doc """
  Counts `event_frames` event frames and `list_frames` member-list updates
  at once (a session that wrote several in one go, see `record/4` for one).
  """
  @spec count(t(), non_neg_integer(), non_neg_integer()) :: :ok
  def count(%__MODULE__{ref: ref}, event_frames, list_frames) do
    if event_frames > 0, do: :counters.add(ref, @event_frames, event_frames)
    if list_frames > 0, do: :counters.add(ref, @list_frames, list_frames)
    :ok
  end

  @doc "Counts one observation of `value` (any unit) in the histogram (not a frame)."
  @spec observe(t(), non_neg_integer()) :: :ok
  def observe(%__MODULE__{ref: ref}, value),
    do: :counters.add(ref, @first_bucket + bucket(value), 1)

  @doc "Frames recorded so far."
  @spec frames(t()) :: non_neg_integer()
  def frames(%__MODULE__{ref: ref}),
    do: :counters.get(ref, @event_frames) + :counters.get(ref, @list_frames)

  @doc "Event frames (not member-list updates) recorded so far."
  @spec event_frames(t()) :: non_neg_integer()
  def event_frames(%__MODULE__{ref: ref}), do: :counters.get(ref, @event_frames)

  @doc "The latency histogram as `[{upper_bound_us, count}]` for non-empty buckets."
  @spec histogram(t()) :: [{non_neg_integer(), non_neg_integer()}]
  def histogram(%__MODULE__{ref: ref}) do
    for index <- 0..(@buckets - 1),
        count = :counters.get(ref, @first_bucket + index),
        count > 0,
        do: {upper_bound(index), count}
  end

  @doc """
  The latency (µs, a bucket's upper bound) below which `fraction` of the frames fall.

      iex> m = Switchboard.Session.Metrics.new()
      iex> Switchboard.Session.Metrics.percentile(m, 0.99)
      nil
  """
  @spec percentile(t() | [{non_neg_integer(), non_neg_integer()}], float()) ::
          non_neg_integer() | nil
  def percentile(%__MODULE__{} = metrics, fraction), do: percentile(histogram(metrics), fraction)

  def percentile(histogram, fraction) when is_list(histogram) do
    total = Enum.reduce(histogram, 0, fn {_, count}, sum -> sum + count end)
    wanted = max(1, ceil(total * fraction))

    Enum.reduce_while(histogram, 0, fn {bound, count}, seen ->
      if seen + count >= wanted, do: {:halt, bound}, else: {:cont, seen + count}
    end)
    |> then(fn result -> if total == 0, do: nil, else: result end)
  end

  @doc false
  def bucket(value) when value < 16, do: max(value, 0)

  def bucket(value) do
    exponent = floor_log2(value)

    index = 16 + (exponent - 4) * 8 + (value >>> (exponent - 3) &&& 7)
    min(index, @buckets - 1)
  end

  @doc false
  def upper_bound(index) when index < 16, do: index

  def upper_bound(index) do
    exponent = div(index - 16, 8) + 4
    mantissa = rem(index - 16, 8)
    ((8 + mantissa + 1) <<< (exponent - 3)) - 1
  end

  # The float estimate, corrected where rounding crossed a power of two.
  defp floor_log2(value) do
    estimate = trunc(:math.log2(value))

    cond do
      1 <<< estimate > value -> estimate - 1
      1 <<< (estimate + 1) <= value -> estimate + 1
      true -> estimate
    end
  end
end
