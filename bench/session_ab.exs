# The session's CPU per frame against a baseline `session.ex` (e.g. main's)
# in the same VM, interleaved: the baseline file is compiled under another
# module name (Switchboard.SessionBaseline), each implementation gets its own
# guild with N sessions, and rounds alternate between the two (order
# shuffled per pair), with wake-ups of 1 frame (one event, then wait for
# all of it) and of a burst of frames (BURST events published back to back
# by a high-priority process to a guild and relays raised to high priority,
# so the events are queued before the sessions run, as the simulator's
# active sessions get them). CPU time of the whole VM
# (:erlang.statistics(:runtime)) over the frames; the context switches per
# frame say how many frames a wake-up got (a session's wake-up is one).
#
#   git show main:lib/switchboard/session.ex > /tmp/main_session.ex
#   SESSION_AB_BASELINE=/tmp/main_session.ex SESSION_AB_RECEIVERS=25000 \
#     MIX_ENV=prod mix run bench/session_ab.exs
Code.require_file("support/harness.ex", __DIR__)
Code.require_file("support/burst.ex", __DIR__)

alias Switchboard.Bench.{Burst, Harness}
alias Switchboard.Guild
alias Switchboard.Session.Metrics

defmodule SessionAB do
  @moduledoc false

  def load_baseline(path) do
    source =
      path
      |> File.read!()
      |> String.replace(
        "defmodule Switchboard.Session do",
        "defmodule Switchboard.SessionBaseline do"
      )

    Code.compile_string(source, path)
    Switchboard.SessionBaseline.init_counters()
  end

  def setup(module, receivers) do
    metrics = Metrics.new()
    {:ok, guild} = Guild.start({:session_ab, module}, mode: :native, members: [])

    pids =
      for _ <- 1..receivers do
        {:ok, pid} = module.start(metrics: metrics)
        :ok = module.attach(pid, guild)
        pid
      end

    %{module: module, guild: guild, metrics: metrics, pids: pids}
  end

  # CPU µs, context switches, collections and words collected per frame
  # of `events` events, published `burst` at a time.
  def round(%{guild: guild, metrics: metrics, pids: pids}, events, burst) do
    receivers = length(pids)
    data = %{"content" => String.duplicate("lorem ipsum ", 10), "author" => %{"id" => 5}}

    Burst.run(guild, burst, fn ->
      before = Metrics.frames(metrics)
      switches = Burst.switches()
      {gcs, words, _} = :erlang.statistics(:garbage_collection)
      {cpu, _} = :erlang.statistics(:runtime)

      for i <- 1..div(events, burst) do
        for _ <- 1..burst, do: {:ok, _} = Guild.publish(guild, {"MESSAGE_CREATE", data})
        wait(metrics, before + i * burst * receivers)
      end

      {cpu_after, _} = :erlang.statistics(:runtime)
      {gcs_after, words_after, _} = :erlang.statistics(:garbage_collection)
      frames = Metrics.frames(metrics) - before
      per_frame = [Burst.switches() - switches, gcs_after - gcs, words_after - words]
      Enum.map([(cpu_after - cpu) * 1000 | per_frame], &(&1 / frames))
    end)
  end

  defp wait(metrics, frames), do: Harness.wait_until(fn -> Metrics.frames(metrics) >= frames end)

  def median(list) do
    sorted = Enum.sort(list)
    Enum.at(sorted, div(length(sorted), 2))
  end
end

SessionAB.load_baseline(System.fetch_env!("SESSION_AB_BASELINE"))

receivers =
  String.to_integer(System.get_env("SESSION_AB_RECEIVERS", "#{Harness.pick(25_000, 1_000)}"))

pairs = String.to_integer(System.get_env("SESSION_AB_PAIRS", "5"))
burst = String.to_integer(System.get_env("SESSION_AB_BURST", "8"))

# About 800,000 frames a round (a multiple of the burst).
frames =
  String.to_integer(System.get_env("SESSION_AB_FRAMES", "#{Harness.pick(800_000, 40_000)}"))

events = max(div(frames, receivers) |> div(burst) |> Kernel.*(burst), burst)

a = SessionAB.setup(Switchboard.SessionBaseline, receivers)
b = SessionAB.setup(Switchboard.Session, receivers)
{load, _} = System.cmd("cat", ["/proc/loadavg"])

results =
  for size <- [1, burst], pair <- 0..pairs, reduce: %{} do
    acc ->
      order = Enum.shuffle([{:a, a}, {:b, b}])

      Enum.reduce(order, acc, fn {name, setup}, acc ->
        value = SessionAB.round(setup, events, size)
        # Pair 0 warms up.
        if pair == 0, do: acc, else: Map.update(acc, {size, name}, [value], &[value | &1])
      end)
  end

us = fn value -> :erlang.float_to_binary(value, decimals: 3) end

IO.puts("""
CPU per frame (µs), #{receivers} sessions each, #{events} events per round, #{pairs} interleaved pairs, load #{String.trim(load)}:

| wake-up | baseline (median, min) | this session (median, min) | ratio of medians | ratio per pair (median) | switches / collections / words collected per frame (baseline; this) |
|---|---:|---:|---:|---:|---:|
""")

for size <- [1, burst] do
  base = Enum.reverse(results[{size, :a}])
  this = Enum.reverse(results[{size, :b}])
  base_us = Enum.map(base, &hd/1)
  this_us = Enum.map(this, &hd/1)
  ratios = Enum.zip_with(this_us, base_us, &(&1 / &2))

  others = fn rows ->
    rows
    |> Enum.map(&tl/1)
    |> Enum.zip_with(&SessionAB.median/1)
    |> Enum.map_join(" / ", &us.(&1))
  end

  IO.puts(
    "| #{size} event(s) | #{us.(SessionAB.median(base_us))}, #{us.(Enum.min(base_us))} | " <>
      "#{us.(SessionAB.median(this_us))}, #{us.(Enum.min(this_us))} | " <>
      "#{us.(SessionAB.median(this_us) / SessionAB.median(base_us))} | #{us.(SessionAB.median(ratios))} | " <>
      "#{others.(base)}; #{others.(this)} |"
  )
end
