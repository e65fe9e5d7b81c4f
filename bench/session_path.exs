# The CPU per frame of the runtime's delivery path, split where issue 12's
# targets need it: a guild publishing to N processes that only count what
# they get (the floor: guild, fan-out, the VM's send and wake-up), then to
# N `Switchboard.Session`s (the session's own work on top), in native and
# in pure mode (the session is the same Elixir in both), all in one run.
# A GenServer that only counts splits the session's share in two: the
# GenServer loop, and the session's own work per frame.
# CPU time (:erlang.statistics(:runtime), the whole VM) over the frames.
# SESSION_PATH_RECEIVERS sets N (default 5,000; the simulator has 25,000:
# per frame costs grow with N, as more processes' memory is touched); the
# events per round shrink so that a round stays about a million frames.
# SESSION_PATH_BURST=8 publishes the events 8 at a time from a process at
# high priority, with the guild and its relays raised to high priority too
# (default 1: at most 4 events in flight, published at normal priority),
# so that a receiver wakes up for several frames, as the simulator's
# active sessions do; the table then says how many frames a wake-up got
# (frames over the VM's context switches). Under `+S 1` (one scheduler:
# `ELIXIR_ERL_OPTIONS="+S 1"`) a burst of 8 is 7.9 frames per wake-up; on
# two schedulers the second one runs receivers while the first publishes
# (3-5 frames per wake-up).
#
#   MIX_ENV=prod mix run bench/session_path.exs
#   SESSION_PATH_RECEIVERS=25000 MIX_ENV=prod mix run bench/session_path.exs
#   SESSION_PATH_RECEIVERS=25000 SESSION_PATH_BURST=8 ELIXIR_ERL_OPTIONS="+S 1" \
#     MIX_ENV=prod mix run bench/session_path.exs
Code.require_file("support/harness.ex", __DIR__)
Code.require_file("support/burst.ex", __DIR__)

alias Switchboard.Bench.{Burst, Harness}
alias Switchboard.{Guild, Session}
alias Switchboard.Session.Metrics

defmodule SessionPathBench do
  @moduledoc false

  use GenServer

  # A receiver that only counts (as a session counts into its metrics).
  def counter(metrics) do
    receive do
      {:"$sb_event", _, _, _, _, _, _, _, _} ->
        Metrics.count(metrics, 1, 0)
        counter(metrics)

      :stop ->
        :ok
    end
  end

  # The same as a GenServer (callbacks of this module).
  @impl true
  def init(metrics), do: {:ok, metrics}

  @impl true
  def handle_info({:"$sb_event", _, _, _, _, _, _, _, _}, metrics) do
    Metrics.count(metrics, 1, 0)
    {:noreply, metrics}
  end

  # Frames per event to `receivers` of `kind` behind one guild of `mode`,
  # `burst` events at a time (see the top); returns CPU µs per frame (best
  # of `rounds`) and frames per context switch (of that round).
  def run(kind, mode, receivers, events, rounds, burst) do
    metrics = Metrics.new()
    id = {:session_path, kind, mode}
    {:ok, guild} = Guild.start(id, mode: mode, members: [])

    pids =
      for _ <- 1..receivers do
        case kind do
          :counter ->
            pid = spawn(fn -> counter(metrics) end)
            {:ok, _, _, _, _} = Guild.connect(guild, pid)
            pid

          :gen_server ->
            {:ok, pid} = GenServer.start(__MODULE__, metrics)
            {:ok, _, _, _, _} = Guild.connect(guild, pid)
            pid

          :session ->
            {:ok, pid} = Session.start(metrics: metrics)
            :ok = Session.attach(pid, guild)
            pid
        end
      end

    data = %{"content" => String.duplicate("lorem ipsum ", 10), "author" => %{"id" => 5}}
    # One warm-up round, then the best of the others.
    best =
      for _ <- 0..rounds do
        Burst.run(guild, burst, fn ->
          before = Metrics.frames(metrics)
          switches = Burst.switches()
          {cpu, _} = :erlang.statistics(:runtime)
          publish(guild, data, metrics, before, receivers, events, burst)
          wait(metrics, before + events * receivers)
          {cpu_after, _} = :erlang.statistics(:runtime)
          frames = Metrics.frames(metrics) - before
          {(cpu_after - cpu) * 1000 / frames, frames / (Burst.switches() - switches)}
        end)
      end
      |> tl()
      |> Enum.min()

    for pid <- pids, do: if(kind == :counter, do: send(pid, :stop), else: GenServer.stop(pid))
    Guild.stop(guild)
    best
  end

  # At most a few events in flight, as the simulator's window: 4 at a
  # time, or a burst (published back to back, then delivered).
  defp publish(guild, data, metrics, before, receivers, events, 1) do
    for i <- 1..events do
      {:ok, _} = Guild.publish(guild, {"MESSAGE_CREATE", data})
      if rem(i, 4) == 0, do: wait(metrics, before + (i - 4) * receivers)
    end
  end

  defp publish(guild, data, metrics, before, receivers, events, burst) do
    for i <- 1..div(events, burst) do
      for _ <- 1..burst, do: {:ok, _} = Guild.publish(guild, {"MESSAGE_CREATE", data})
      wait(metrics, before + i * burst * receivers)
    end
  end

  defp wait(metrics, frames), do: Harness.wait_until(fn -> Metrics.frames(metrics) >= frames end)
end

receivers =
  String.to_integer(System.get_env("SESSION_PATH_RECEIVERS", "#{Harness.pick(5_000, 1_000)}"))

burst = String.to_integer(System.get_env("SESSION_PATH_BURST", "1"))
events = max(div(Harness.pick(1_000_000, 50_000), receivers), 8) |> div(burst) |> Kernel.*(burst)
rounds = 3

runs =
  for mode <- [:native, :pure], kind <- [:counter, :gen_server, :session], into: %{} do
    {{mode, kind}, SessionPathBench.run(kind, mode, receivers, events, rounds, burst)}
  end

results = Map.new(runs, fn {key, {us, _}} -> {key, us} end)

us = fn value -> :erlang.float_to_binary(value, decimals: 2) end

IO.write("""
CPU per frame, #{receivers} receivers, #{events} events per round, #{burst} at a time, best of #{rounds} (µs):

| mode | counting process (floor) | counting GenServer | session | the session's own share (of it, past the GenServer loop) |
|---|---:|---:|---:|---:|
""")

for mode <- [:native, :pure] do
  floor = results[{mode, :counter}]
  gen_server = results[{mode, :gen_server}]
  session = results[{mode, :session}]

  IO.puts(
    "| #{mode} | #{us.(floor)} | #{us.(gen_server)} | #{us.(session)} | " <>
      "#{us.(session - floor)} (#{us.(session - gen_server)}) |"
  )
end

IO.puts(
  "\nFrames per context switch (about the frames per wake-up), of each best round: " <>
    Enum.map_join(runs, ", ", fn {{mode, kind}, {_, per}} ->
      "#{mode} #{kind} #{:erlang.float_to_binary(per, decimals: 1)}"
    end)
)

native = results[{:native, :session}]
pure = results[{:pure, :session}]
shared = min(native - results[{:native, :counter}], pure - results[{:pure, :counter}])

IO.puts("""

native / pure frames per CPU-second: #{us.(pure / native)}x. With the
session's own share (#{us.(shared)} µs, the same Elixir in both modes) in
every frame, native is at most #{us.(pure / max(shared, 0.01))}x pure even if
everything else in native mode cost nothing.
""")
