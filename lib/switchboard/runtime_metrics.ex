defmodule Switchboard.RuntimeMetrics do
  @moduledoc """
  What the runtime (`Switchboard.Guild`, `Switchboard.Session`,
  `Switchboard.Guard`) reports through `Switchboard.Metrics`, in one place,
  so each call site is one line.

  | name | kind | meaning |
  |---|---|---|
  | `switchboard.sessions.connected` | gauge | `Switchboard.Session` processes alive |
  | `switchboard.sessions.started` | counter | sessions started |
  | `switchboard.sessions.slow_disconnects` | counter | sessions stopped because their client fell behind |
  | `switchboard.guilds` | gauge | `Switchboard.Guild` processes alive |
  | `switchboard.frames.delivered` | counter | frames written by sessions to their transports |
  | `switchboard.publish_to_frame_us` | histogram | µs from the guild's publish to the frame written, one frame in 8 (by the session's sequence number) |
  | `switchboard.guild.events` | counter | events published by guilds, tag `essential:` (`true`/`false`) |
  | `switchboard.guild.connects` | counter | sessions connected to a guild |
  | `switchboard.member_list.ops` | counter | member changes (join, leave, presence, update) |
  | `switchboard.member_list.change_us` | histogram | µs the member list took for one change |
  | `switchboard.member_list.updates` | counter | `GUILD_MEMBER_LIST_UPDATE` messages sent (one per distinct op list) |
  | `switchboard.member_list.subscribes` | counter | member-list subscriptions (ranges replaced) |
  | `switchboard.guard.busy` | counter | guarded calls refused for a full semaphore (then retried), tag `kind:` |
  | `switchboard.guard.gave_up` | counter | guarded calls that ran out of retries, tag `kind:` |

  A guild hands its `member_list.ops`, `member_list.change_us` and
  `member_list.updates` over in batches (`member_changes/1`): at most 32
  changes or 100 ms late, and complete before its `Switchboard.Guild.stats/1`
  replies.

  The two gauges count live processes with no message and no sweep: each
  guild and session takes one slot of a `Switchboard.Semaphore` with no
  practical limit when it starts and never gives it back, so the
  semaphore's own monitor frees the slot the moment the process dies, and
  the slot count is the number of live processes. A gauge keeps the last
  value set: each start sets it, and `refresh/0` (called by this module's
  process every `:refresh_ms`, 1,000 by default, and before a snapshot that
  must be exact) sets it after deaths.

  Everything goes to the metrics and semaphore modules of the installed
  mode (`Switchboard.Implementation.install/1`): `Switchboard.Metrics` and
  `Switchboard.Semaphore` natively, their twins under `--mode pure`. A
  reporter that must follow the mode reads `snapshot/1` here
  (`Switchboard.Metrics.Prometheus.start_link(metrics: Switchboard.RuntimeMetrics)`).
  """

  use GenServer

  import Bitwise

  alias Switchboard.Implementation

  @sessions {__MODULE__, :sessions}
  @guilds {__MODULE__, :guilds}
  # No practical limit: the slots only count.
  @unbounded 1 <<< 62
  # One frame in this many has its latency recorded.
  @sample_mask 7

  @doc """
  Whether the frame numbered `seq` (by its session) has its latency
  recorded: one in #{@sample_mask + 1} (a guard).
  """
  defguard sampled?(seq) when (seq &&& @sample_mask) == 0

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "Counts the calling process as a live session (once per process)."
  @spec session_started() :: :ok
  def session_started do
    true = Implementation.semaphore().acquire(@sessions, @unbounded)
    Implementation.metrics().increment("switchboard.sessions.started")

    Implementation.metrics().gauge(
      "switchboard.sessions.connected",
      Implementation.semaphore().count(@sessions)
    )
  end

  @doc "Counts the calling process as a live guild (once per process)."
  @spec guild_started() :: :ok
  def guild_started do
    true = Implementation.semaphore().acquire(@guilds, @unbounded)

    Implementation.metrics().gauge(
      "switchboard.guilds",
      Implementation.semaphore().count(@guilds)
    )
  end

  @doc """
  A snapshot of the installed mode's metrics (the `snapshot/1` of
  `Switchboard.Metrics` or `Switchboard.Metrics.Pure`).
  """
  @spec snapshot(keyword()) :: map()
  def snapshot(opts \\ []), do: Implementation.metrics().snapshot(opts)

  @doc "Sets both gauges to the live processes now."
  @spec refresh() :: :ok
  def refresh do
    Implementation.metrics().gauge(
      "switchboard.sessions.connected",
      Implementation.semaphore().count(@sessions)
    )

    Implementation.metrics().gauge(
      "switchboard.guilds",
      Implementation.semaphore().count(@guilds)
    )
  end

  @doc """
  One frame written by a session: its sequence number `seq` and the time
  its event was published, `at` (`System.system_time(:microsecond)`), or
  `nil` for a frame of no event (the gateway's READY, a member chunk...),
  which is counted but not timed.
  """
  @spec frame_delivered(integer() | nil, non_neg_integer()) :: :ok
  def frame_delivered(at, seq) do
    frames_delivered(1)
    if at != nil and sampled?(seq), do: frame_latency(System.system_time(:microsecond) - at)
    :ok
  end

  @doc "`count` frames written (a session that wrote several in one go)."
  @spec frames_delivered(non_neg_integer()) :: :ok
  def frames_delivered(0), do: :ok

  def frames_delivered(count),
    do: Implementation.metrics().increment("switchboard.frames.delivered", count)

  @doc "The publish-to-frame latency of a sampled frame, in µs (see `sampled?/1`)."
  @spec frame_latency(integer()) :: :ok
  def frame_latency(us),
    do: Implementation.metrics().histogram("switchboard.publish_to_frame_us", max(us, 0))

  @doc "A session stopped because its client fell behind."
  @spec slow_disconnect() :: :ok
  def slow_disconnect,
    do: Implementation.metrics().increment("switchboard.sessions.slow_disconnects")

  @doc "An event published by a guild."
  @spec event_published(boolean()) :: :ok
  def event_published(essential),
    do: Implementation.metrics().increment("switchboard.guild.events", 1, essential: essential)

  @doc "A session connected to a guild."
  @spec guild_connect() :: :ok
  def guild_connect, do: Implementation.metrics().increment("switchboard.guild.connects")

  @doc "A member change (join, leave, presence, update)."
  @spec member_op() :: :ok
  def member_op, do: Implementation.metrics().increment("switchboard.member_list.ops")

  @doc "The member list's own time for one change, in native time units."
  @spec member_list_change(integer()) :: :ok
  def member_list_change(native) do
    us = System.convert_time_unit(native, :native, :microsecond)
    Implementation.metrics().histogram("switchboard.member_list.change_us", max(us, 0))
  end

  @doc """
  Member changes handled by a guild, given as the member list's own time
  for each (native time units): what `member_op/0` and
  `member_list_change/1` record one at a time, for a batch.
  """
  @spec member_changes([integer()]) :: :ok
  def member_changes([]), do: :ok

  def member_changes(list_times) do
    Enum.each(list_times, &member_list_change/1)
    Implementation.metrics().increment("switchboard.member_list.ops", length(list_times))
  end

  @doc "`count` member-list update messages sent."
  @spec member_list_updates(non_neg_integer()) :: :ok
  def member_list_updates(0), do: :ok

  def member_list_updates(count),
    do: Implementation.metrics().increment("switchboard.member_list.updates", count)

  @doc "A member-list subscription."
  @spec member_list_subscribe() :: :ok
  def member_list_subscribe,
    do: Implementation.metrics().increment("switchboard.member_list.subscribes")

  @doc "A guarded call of `kind` found its semaphore full."
  @spec guard_busy(atom()) :: :ok
  def guard_busy(kind),
    do: Implementation.metrics().increment("switchboard.guard.busy", 1, kind: kind)

  @doc "A guarded call of `kind` ran out of retries."
  @spec guard_gave_up(atom()) :: :ok
  def guard_gave_up(kind),
    do: Implementation.metrics().increment("switchboard.guard.gave_up", 1, kind: kind)

  # ---------------------------------------------------------------------------
  # The refresher

  @impl true
  def init(opts) do
    interval =
      Keyword.get(opts, :refresh_ms, Application.get_env(:switchboard, :gauge_refresh_ms, 1_000))

    schedule(interval)
    {:ok, interval}
  end

  @impl true
  def handle_info(:refresh, interval) do
    refresh()
    schedule(interval)
    {:noreply, interval}
  end

  defp schedule(interval), do: Process.send_after(self(), :refresh, interval)
end
