defmodule Switchboard.Sim.Node do
  @moduledoc false
  # The simulator's helpers on every node (called locally or with :erpc):
  # this node's metrics, its sessions, their totals and its memory.

  alias Switchboard.Session
  alias Switchboard.Session.Metrics
  alias Switchboard.Transport.Sink

  @metrics_key {__MODULE__, :metrics}

  def setup(mode) do
    Switchboard.Implementation.install(mode)
    :persistent_term.put(@metrics_key, Metrics.new())
    :ok
  end

  def metrics, do: :persistent_term.get(@metrics_key)
  def frames, do: Metrics.frames(metrics())
  def event_frames, do: Metrics.event_frames(metrics())
  def histogram, do: Metrics.histogram(metrics())

  # Starts and attaches one session per spec {guild_id, passive, ranges, slow}
  # (`receiver` :floor: `Switchboard.Sim.FloorSession`s instead, the
  # floor of a session's own work). Returns how many attached.
  def start_sessions(specs, receiver \\ :session) do
    metrics = metrics()
    module = if receiver == :floor, do: Switchboard.Sim.FloorSession, else: Session

    Enum.count(specs, fn {guild_id, passive, ranges, slow} ->
      opts = [
        transport: {Sink, [hold: slow]},
        metrics: metrics,
        buffer_limit: if(slow, do: 4 * 1024, else: 4 * 1024 * 1024)
      ]

      {:ok, pid} = module.start(opts)
      module.attach(pid, guild_id, passive: passive, ranges: ranges) == :ok
    end)
  end

  def sessions do
    for {_, pid, _, _} <- DynamicSupervisor.which_children(Switchboard.Session.Supervisor),
        is_pid(pid),
        do: pid
  end

  # Totals over this node's live sessions: their own counts, plus the
  # stream numbers each should have seen by the end (`finals`: guild id =>
  # {all_seq, essential_seq}) and did not.
  def totals(finals) do
    Enum.reduce(
      sessions(),
      %{sessions: 0, lost: 0, duplicated: 0, out_of_order: 0, memory: 0},
      fn pid, acc ->
        try do
          stats = Session.stats(pid)
          {:memory, memory} = Process.info(pid, :memory)

          tail =
            Enum.reduce(stats.streams, 0, fn {guild_id, {passive, last}}, sum ->
              {all_seq, essential_seq} = Map.fetch!(finals, guild_id)
              sum + max(if(passive, do: essential_seq, else: all_seq) - last, 0)
            end)

          %{
            acc
            | sessions: acc.sessions + 1,
              lost: acc.lost + stats.lost + tail,
              duplicated: acc.duplicated + stats.duplicated,
              out_of_order: acc.out_of_order + stats.out_of_order,
              memory: acc.memory + memory
          }
        catch
          :exit, _ -> acc
        end
      end
    )
  end

  def stop_sessions do
    for pid <- sessions(),
        do: DynamicSupervisor.terminate_child(Switchboard.Session.Supervisor, pid)

    :ok
  end

  # Resident memory of this OS process, in bytes.
  def rss do
    :erlang.garbage_collect()

    case File.read("/proc/self/statm") do
      {:ok, statm} ->
        [_size, resident | _] = String.split(statm)
        String.to_integer(resident) * 4096

      {:error, _} ->
        :erlang.memory(:total)
    end
  end
end
