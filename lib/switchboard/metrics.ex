defmodule Switchboard.Metrics do
  @moduledoc """
  Counters, gauges and histograms in native storage, sharded per scheduler.

      Switchboard.Metrics.increment("switchboard.frames.delivered", 120)
      Switchboard.Metrics.gauge("switchboard.sessions.connected", 5_012)
      Switchboard.Metrics.histogram("switchboard.publish_to_frame_us", 840, shard: 3)
      Switchboard.Metrics.measure("switchboard.guild.call_us", fn -> work() end)
      Switchboard.Metrics.snapshot()

  Every scheduler thread writes its own shard (a `thread_local` pointer in
  the NIF): an increment or a histogram record is a plain load and store on
  memory no other thread writes: no lock, no atomic read-modify-write, no
  cache line shared with another scheduler on the write path. The first use
  of a key on a thread validates it and interns it with its tags sorted;
  later uses find it by hash in the thread's own index. `snapshot/0` merges
  the shards on a dirty scheduler. Histograms are log-linear (HdrHistogram's
  layout, 128 buckets per power of two): quantiles within 1%, count, min,
  max and mean exact. Keys are never removed: keep tag values bounded.

  The contract (names, tags, values, errors) is
  `Switchboard.Metrics.Behaviour`; `Switchboard.Metrics.Pure` is the ETS
  twin. Reporters: `Switchboard.Metrics.StatsD` and
  `Switchboard.Metrics.Prometheus` (which also serves the `/dashboard`).

  ## The runtime's metric names

  The dashboard shows these; the runtime reports them under exactly these
  names (strings), with no tags unless said:

  | name | kind | meaning |
  |---|---|---|
  | `switchboard.sessions.connected` | gauge | `Switchboard.Session` processes alive (wired) |
  | `switchboard.guilds` | gauge | guild processes running (wired) |
  | `switchboard.frames.delivered` | counter | frames written to sessions' sockets (the dashboard's frames per second; wired) |
  | `switchboard.publish_to_frame_us` | histogram | µs from a guild publishing an event to the frame leaving for a session, one frame in 8 (wired) |
  | `switchboard.gateway.bytes_raw` | counter | payload bytes before compression (wired) |
  | `switchboard.gateway.bytes_compressed` | counter | the same payloads' bytes after compression, equal to raw on uncompressed connections (ratio = raw / compressed; wired) |
  | `switchboard.gateway.connections` | counter | WebSocket connections accepted (wired) |
  | `switchboard.gateway.closes` | counter | connections closed, tag `code:` (close code; 1006 for a socket lost with no close frame; wired) |
  | `switchboard.gateway.rate_limited` | counter | commands refused by a rate limit: 4008, RATE_LIMITED for member requests, IDENTIFY limits (wired) |
  | `switchboard.fanout.sends` | counter | `Switchboard.Fanout.send/3` calls (wired) |
  | `switchboard.fanout.deliveries` | counter | messages delivered by fan-out (wired) |
  | `switchboard.guild.events` | counter | events published by guilds, tag `essential:` (wired) |
  | `switchboard.member_list.ops` | counter | member changes: joins, leaves, presence, updates (wired) |
  | `switchboard.member_list.change_us` | histogram | µs the member list took for one change (wired) |
  | `switchboard.guard.busy` | counter | guarded calls refused for a full semaphore, tag `kind:` (wired) |

  `Switchboard.RuntimeMetrics` lists every name the runtime reports and
  where; `Switchboard.Guard` the semaphores around guild and registry calls.

  ## Examples

      iex> Switchboard.Metrics.increment("doc.requests", 2, route: "/a")
      :ok
      iex> Switchboard.Metrics.increment("doc.requests", 3, route: "/a")
      :ok
      iex> Switchboard.Metrics.snapshot().counters[{"doc.requests", [route: "/a"]}]
      5
      iex> Switchboard.Metrics.increment({:doc}, 1)
      ** (ArgumentError) expected a metric name (an atom or a string of at most 255 bytes), got: {:doc}
  """
  use Switchboard.Metrics.Behaviour

  alias Switchboard.Metrics.Behaviour
  alias Switchboard.NIF

  @doc """
  Adds `value` (an integer, default 1) to the counter `name` with `tags`.

  ## Examples

      iex> Switchboard.Metrics.increment(:doc_increment)
      :ok
      iex> Switchboard.Metrics.increment(:doc_increment, 1.5)
      ** (ArgumentError) expected an integer (64-bit) to add to a counter, got: 1.5
  """
  @impl true
  @spec increment(Behaviour.name(), integer(), Behaviour.tags()) :: :ok
  def increment(name, value \\ 1, tags \\ [])

  # The NIF checks the range (64 bits), the name and the tags: the guard
  # stays a type test, the cheapest there is.
  def increment(name, value, tags) when is_integer(value) do
    case NIF.metrics_increment(name, value, tags) do
      :ok -> :ok
      reason -> Behaviour.raise_for!(reason, :counter, name, value, tags)
    end
  end

  def increment(_name, value, _tags), do: Behaviour.bad_value!(:counter, value)

  @doc """
  Sets the gauge `name` with `tags` to `value` (an integer or a float).

  ## Examples

      iex> Switchboard.Metrics.gauge("doc.gauge", 1.5, zone: :a)
      :ok
      iex> Switchboard.Metrics.gauge("doc.gauge", 2, zone: "a", zone: "b")
      ** (ArgumentError) expected tags as a keyword list of at most 32 distinct atom keys with atom, string (at most 255 bytes) or integer values, got: [zone: "a", zone: "b"]
  """
  @impl true
  @spec gauge(Behaviour.name(), number(), Behaviour.tags()) :: :ok
  def gauge(name, value, tags \\ [])

  def gauge(name, value, tags) when is_number(value) do
    case NIF.metrics_gauge(name, value, tags) do
      :ok -> :ok
      reason -> Behaviour.raise_for!(reason, :gauge, name, value, tags)
    end
  end

  def gauge(_name, value, _tags), do: Behaviour.bad_value!(:gauge, value)

  @doc """
  Records `value` (a non-negative number) in the histogram `name` with `tags`.

  ## Examples

      iex> Switchboard.Metrics.histogram("doc.latency_us", 250)
      :ok
      iex> Switchboard.Metrics.histogram("doc.latency_us", -1)
      ** (ArgumentError) expected a non-negative number for a histogram, got: -1
  """
  @impl true
  @spec histogram(Behaviour.name(), number(), Behaviour.tags()) :: :ok
  def histogram(name, value, tags \\ [])

  def histogram(name, value, tags) when is_number(value) do
    case NIF.metrics_histogram(name, value, tags) do
      :ok -> :ok
      reason -> Behaviour.raise_for!(reason, :histogram, name, value, tags)
    end
  end

  def histogram(_name, value, _tags), do: Behaviour.bad_value!(:histogram, value)

  @doc """
  Every metric, as
  `%{counters: %{{name, tags} => integer}, gauges: %{{name, tags} => number},
  histograms: %{{name, tags} => %{count:, min:, max:, mean:, p50:, p90:, p99:, p999:}}}`
  with tags sorted by key.

  ## Options

    * `:buckets` - non-negative integer bounds (default `[]`): each histogram
      also gets `:sum` and `:buckets`, `[{bound, values at most bound}]`.
    * `:values` - when `true` (default `false`), each histogram also gets
      `:sum` and `:values`, `[{value, count}]` for every non-empty bucket
      (`value` is the bucket's midpoint).
  """
  @impl true
  @spec snapshot(keyword()) :: Behaviour.snapshot()
  def snapshot(opts \\ []) do
    {bounds, values} = Behaviour.snapshot_options!(opts)
    NIF.metrics_snapshot(bounds, values)
  end
end
