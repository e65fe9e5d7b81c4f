# Fan-out: Switchboard.Fanout against Enum.each + send/2 and the pure twin.
#
#   MIX_ENV=prod mix run bench/fanout.exs       (the release build)
#   SWITCHBOARD_BENCH_QUICK=1 mix run bench/fanout.exs
#   FANOUT_BENCH=dist,batch mix run bench/fanout.exs   (some sections only)
#
# Four tables, each figure beside its baseline from the same run:
#   fanout-local  local fan-out (1k/10k/100k receivers, small tuple and 1 KB
#                 map), caller-blocked time with and without offload;
#   fanout-dist   cross-node fan-out to two :peer nodes on this machine;
#   fanout-batch  presence storm through Switchboard.Fanout.Batcher;
#   fanout-probe  scheduler wake-up latency during a 1M fan-out.
#
# Local receivers take their messages as they come (a receive loop), as
# sessions do; the time of a job is the caller's: from the call until it
# returns (for an offloaded send that is the hand-off only, and a separate
# job waits for the deliveries with Fanout.sync/0).
Code.require_file("support/harness.ex", __DIR__)
Code.require_file("support/scheduler_probe.ex", __DIR__)

alias Switchboard.Bench.{Harness, SchedulerProbe}
alias Switchboard.Fanout
alias Switchboard.Fanout.{Batcher, Partitioner, Pure, Sender}

{:module, receivers_module, receivers_binary, _} =
  defmodule Switchboard.Bench.FanoutReceivers do
    @moduledoc false
    # Receivers that count what they get. Loaded onto the peers too (its
    # object code is sent with :code.load_binary), so it has no deps.

    def spawn_consumers(n), do: for(_ <- 1..n, do: spawn(&consume/0))

    defp consume do
      receive do
        _ -> consume()
      end
    end

    # `n` receivers that add each message's event count to a shared
    # :atomics; the one that brings it to the target tells the watcher, which
    # tells whoever armed it. Returns {atomics, watcher, pids}.
    def spawn_counting(n) do
      counts = :atomics.new(3, [])
      watcher = spawn(fn -> watch(nil) end)
      pids = for _ <- 1..n, do: spawn(fn -> count(counts, watcher) end)
      {counts, watcher, pids}
    end

    # Resets the counters and asks for {:delivered, node()} at `target` messages.
    def arm({counts, watcher, _pids}, target, notify) do
      :atomics.put(counts, 1, 0)
      :atomics.put(counts, 2, target)
      :atomics.put(counts, 3, 0)
      send(watcher, {:arm, notify, self()})

      receive do
        :armed -> :ok
      end
    end

    # {messages, events} received by all receivers since the last arm.
    def totals({counts, _watcher, _pids}), do: {:atomics.get(counts, 1), :atomics.get(counts, 3)}

    defp count(counts, watcher) do
      receive do
        message ->
          events =
            case message do
              {:batch, events} -> length(events)
              _ -> 1
            end

          :atomics.add(counts, 3, events)
          if :atomics.add_get(counts, 1, 1) == :atomics.get(counts, 2), do: send(watcher, :done)
          count(counts, watcher)
      end
    end

    defp watch(notify) do
      receive do
        {:arm, new_notify, from} ->
          send(from, :armed)
          watch(new_notify)

        :done ->
          if notify, do: send(notify, {:delivered, node()})
          watch(notify)
      end
    end
  end

alias Switchboard.Bench.FanoutReceivers

defmodule Switchboard.Bench.FanoutBaselines do
  @moduledoc false
  # What runs per receiver or per event is compiled here: a closure written
  # at the top level of this script would run in the interpreter and make
  # the baselines look slower than they are.
  def each_send(pids, message), do: Enum.each(pids, &send(&1, message))

  def push_all(batcher, events),
    do: Enum.each(events, &Switchboard.Fanout.Batcher.push(batcher, &1))

  def send_each_update(updates, receivers),
    do: Enum.each(updates, &Switchboard.Fanout.send(receivers, &1))

  def user_key(update), do: elem(update, 0)
end

alias Switchboard.Bench.FanoutBaselines

sections = String.split(System.get_env("FANOUT_BENCH", "local,dist,batch,probe"), ",")
section? = &(&1 in sections)
small = {:msg, 42, "hi"}
map_1kb = Map.new(1..24, fn i -> {"key#{i}", String.duplicate(<<?a + rem(i, 26)>>, 20)} end)
IO.puts("1 KB map: #{byte_size(:erlang.term_to_binary(map_1kb))} bytes as ETF")

# Before each sample: wait until the receivers have taken the previous
# sample's messages (no runnable processes left), so samples do not overlap.
settle = fn ->
  deadline = System.monotonic_time(:millisecond) + 30_000

  Stream.repeatedly(fn -> :erlang.statistics(:total_run_queue_lengths) end)
  |> Enum.find(fn queued ->
    queued == 0 or System.monotonic_time(:millisecond) > deadline or Process.sleep(5)
  end)

  nil
end

ratio = fn baseline, value -> Harness.format_ratio(baseline / max(value, 1.0e-9)) end
us = fn ns -> "#{:erlang.float_to_binary(ns / 1000, decimals: 1)} µs" end

# ---------------------------------------------------------------------------
# Local fan-out

if section?.("local") do
  sizes = [1_000, 10_000, 100_000]
  # One set of receivers; smaller jobs use a prefix of it.
  local_pids = FanoutReceivers.spawn_consumers(Enum.max(sizes))

  local_jobs =
    for {label, message} <- [{"small tuple", small}, {"1 KB map", map_1kb}], n <- sizes do
      pids = Enum.take(local_pids, n)
      ok? = fn _input, result -> result == :ok or match?(%{local: ^n}, result) end

      [
        name: "#{label} → #{n} local receivers (deliveries/s)",
        ops: n,
        samples: if(n >= 100_000, do: 15, else: 30),
        setup: settle,
        baseline: {"Enum.each + send/2", fn _ -> FanoutBaselines.each_send(pids, message) end},
        candidates:
          [
            {"Fanout.send", fn _ -> Fanout.send(pids, message) end},
            {"Pure.send", fn _ -> Pure.send(pids, message) end}
          ] ++
            if(message == map_1kb,
              do: [
                {"Fanout.send deliver: :packed (one shared ETF binary)",
                 fn _ -> Fanout.send(pids, message, deliver: :packed) end},
                {"Pure.send deliver: :packed",
                 fn _ -> Pure.send(pids, message, deliver: :packed) end}
              ],
              else: []
            ),
        check: ok?
      ]
    end

  blocked_pids = Enum.take(local_pids, 100_000)
  blocked_group = Switchboard.Fanout.Group.new(blocked_pids)
  blocked_pure_group = Pure.Group.new(blocked_pids)

  blocked_jobs = [
    [
      name: "caller blocked: 1 KB map → 100k (time per call)",
      samples: 15,
      setup: settle,
      baseline:
        {"Enum.each + send/2", fn _ -> FanoutBaselines.each_send(blocked_pids, map_1kb) end},
      candidates: [
        {"Fanout.send", fn _ -> Fanout.send(blocked_pids, map_1kb) end},
        {"Fanout.send offload", fn _ -> Fanout.send(blocked_pids, map_1kb, offload: true) end},
        {"Pure.send offload", fn _ -> Pure.send(blocked_pids, map_1kb, offload: true) end},
        {"Fanout.send offload, to a Group",
         fn _ -> Fanout.send(blocked_group, map_1kb, offload: true) end},
        {"Pure.send offload, to a Pure.Group",
         fn _ -> Pure.send(blocked_pure_group, map_1kb, offload: true) end}
      ],
      # Let the offloaded deliveries finish before the next sample.
      check: fn _, _ ->
        Fanout.sync()
        Pure.sync()
        true
      end
    ],
    [
      name: "offload end to end: 1 KB map → 100k, until delivered (deliveries/s)",
      ops: 100_000,
      samples: 15,
      setup: settle,
      baseline:
        {"Enum.each + send/2", fn _ -> FanoutBaselines.each_send(blocked_pids, map_1kb) end},
      candidates: [
        {"Fanout.send offload + sync",
         fn _ ->
           Fanout.send(blocked_pids, map_1kb, offload: true)
           Fanout.sync()
         end},
        {"Pure.send offload + sync",
         fn _ ->
           Pure.send(blocked_pids, map_1kb, offload: true)
           Pure.sync()
         end},
        {"Fanout.send offload to a Group + sync",
         fn _ ->
           Fanout.send(blocked_group, map_1kb, offload: true)
           Fanout.sync()
         end}
      ]
    ]
  ]

  local_rows = Harness.run("fanout-local", local_jobs ++ blocked_jobs)

  blocked = Enum.find(local_rows, &String.starts_with?(&1.job, "caller blocked"))

  for label <- ["Fanout.send offload", "Fanout.send offload, to a Group"] do
    offload = Enum.find(blocked.candidates, &(&1.label == label))

    IO.puts(
      "caller blocked by a 100k fan-out, #{label}: median #{us.(offload.median_ns)}, " <>
        "p99 #{us.(offload.p99_ns)} (target ≤ 200 µs)"
    )
  end

  IO.puts("")

  Enum.each(local_pids, &Process.exit(&1, :kill))
end

# ---------------------------------------------------------------------------
# Cross-node: two peers on this machine

if section?.("dist") do
  unless Node.alive?() do
    {_, 0} = System.cmd("epmd", ["-daemon"])
    {:ok, _} = :net_kernel.start([:"fanout_bench_#{:os.getpid()}@127.0.0.1", :longnames])
  end

  paths = Enum.reject(:code.get_path(), &List.starts_with?(&1, :code.root_dir()))

  peers =
    for i <- 1..2 do
      {:ok, peer, node} =
        :peer.start(%{
          name: :"fanout_bench_peer#{i}_#{:os.getpid()}",
          host: ~c"127.0.0.1",
          longnames: true,
          # A star around this node: peers do not mesh, so one going down
          # does not make `global` disconnect the others.
          args: [~c"-connect_all", ~c"false" | Enum.flat_map(paths, &[~c"-pa", &1])]
        })

      {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:switchboard])

      {:module, _} =
        :erpc.call(node, :code, :load_binary, [receivers_module, ~c"bench", receivers_binary])

      {peer, node}
    end

  per_peer = Harness.pick(10_000, 2_000)

  remote =
    for {_peer, node} <- peers do
      {node, :erpc.call(node, FanoutReceivers, :spawn_counting, [per_peer])}
    end

  remote_pids = remote |> Enum.flat_map(fn {_node, {_, _, pids}} -> pids end) |> Enum.shuffle()
  total_remote = length(remote_pids)

  # A sample: arm both peers, fan out, wait until both have every delivery.
  arm_all = fn target ->
    for {node, handle} <- remote do
      :erpc.call(node, FanoutReceivers, :arm, [handle, target, self()])
    end
  end

  await_all = fn ->
    for _ <- remote do
      receive do
        {:delivered, _node} -> :ok
      after
        60_000 -> raise "cross-node deliveries did not arrive"
      end
    end

    :ok
  end

  # Arming the peers is the (untimed) setup of each sample.
  cross = fn send_fun ->
    fn _ ->
      send_fun.()
      await_all.()
    end
  end

  dist_jobs =
    for {label, message} <- [{"small tuple", small}, {"1 KB map", map_1kb}] do
      [
        name: "#{label} → #{total_remote} receivers on 2 peers (deliveries/s)",
        ops: total_remote,
        samples: 50,
        setup: fn -> arm_all.(per_peer) end,
        baseline: {"Pure.send", cross.(fn -> Pure.send(remote_pids, message) end)},
        candidates: [
          {"Fanout.send", cross.(fn -> Fanout.send(remote_pids, message) end)},
          {"Fanout.send pack: :binary",
           cross.(fn -> Fanout.send(remote_pids, message, pack: :binary) end)},
          {"Pure.send pack: :binary",
           cross.(fn -> Pure.send(remote_pids, message, pack: :binary) end)}
        ]
      ]
    end

  Harness.run("fanout-dist", dist_jobs)

  # Distribution messages per fan-out, counted by the senders (sends to
  # another node's partitioner) and by the partitioners that received them,
  # over a fixed number of fan-outs in every mode.
  counted_fanouts = 20
  modes = [[], [pack: :binary], [offload: true], [offload: true, pack: :binary]]

  dist_extra =
    for {label, implementation, sender, partitioner} <- [
          {"Switchboard.Fanout", Fanout, Sender, Partitioner},
          {"Switchboard.Fanout.Pure", Pure, Pure.Sender, Pure.Partitioner}
        ] do
      received = fn -> Enum.sum(for {_, node} <- peers, do: partitioner.stats(node).messages) end
      sent_before = sender.stats().dist_messages
      received_before = received.()

      for i <- 1..counted_fanouts do
        arm_all.(per_peer)
        implementation.send(remote_pids, small, Enum.at(modes, rem(i, 4)))
        await_all.()
      end

      sent = sender.stats().dist_messages - sent_before

      [
        {"implementation", label},
        {"fan-outs (all modes)", counted_fanouts},
        {"remote nodes", length(peers)},
        {"dist messages sent", sent},
        {"received by partitioners", received.() - received_before},
        {"dist messages per fan-out",
         :erlang.float_to_binary(sent / counted_fanouts, decimals: 2)}
      ]
    end

  Harness.run("fanout-dist-messages", [], dist_extra)
  Enum.each(peers, fn {peer, _} -> :peer.stop(peer) end)
end

# ---------------------------------------------------------------------------
# Batching: a presence storm

if section?.("batch") do
  storm = fn updates, users -> for i <- 1..updates, do: {rem(i * 7919, users), {:status, i}} end
  # A window: up to 1,000 entries or 50 ms. Presence storms repeat users
  # within a window (20 updates per user here), which is what coalescing
  # is for.
  batch_opts = [max_events: 1_000, max_delay_ms: 50]
  users = fn updates -> div(updates, 20) end

  run_storm = fn events, receivers, opts ->
    {:ok, batcher} = Batcher.start_link([receivers: receivers] ++ batch_opts ++ opts)
    FanoutBaselines.push_all(batcher, events)
    Batcher.flush(batcher, :infinity)
    GenServer.stop(batcher)
  end

  # Timed at a size the unbatched baseline can finish: every update to every
  # receiver, one message each (1M deliveries at full size).
  timed_receivers = FanoutReceivers.spawn_consumers(Harness.pick(1_000, 300))
  timed_updates = storm.(Harness.pick(1_000, 300), users.(Harness.pick(1_000, 300)))

  batch_jobs = [
    [
      name:
        "presence storm: #{length(timed_updates)} updates → #{length(timed_receivers)} receivers (updates/s)",
      ops: length(timed_updates),
      samples: 10,
      setup: settle,
      baseline:
        {"Fanout.send per update",
         fn _ -> FanoutBaselines.send_each_update(timed_updates, timed_receivers) end},
      candidates: [
        {"Batcher", fn _ -> run_storm.(timed_updates, timed_receivers, []) end},
        {"Batcher, coalescing by user",
         fn _ ->
           run_storm.(timed_updates, timed_receivers, coalesce: &FanoutBaselines.user_key/1)
         end}
      ]
    ]
  ]

  # The full storm, counted at the receivers: 10k updates from 500 users to
  # 10k receivers. The time is until the last batch is in every receiver's
  # queue; the counts are read once the receivers have taken everything.
  storm_updates = Harness.pick(10_000, 2_000)
  storm_receivers = Harness.pick(10_000, 2_000)
  full_storm = storm.(storm_updates, users.(storm_updates))
  {_, _, counted_pids} = counted = FanoutReceivers.spawn_counting(storm_receivers)

  measure_storm = fn opts ->
    FanoutReceivers.arm(counted, -1, nil)
    started = System.monotonic_time(:nanosecond)
    run_storm.(full_storm, counted_pids, opts)
    elapsed = System.monotonic_time(:nanosecond) - started
    settle.()
    # Read once the receivers' counts stop moving: the run queue can be
    # momentarily empty while the last batches are still being taken.
    {messages, events} =
      Stream.repeatedly(fn ->
        Process.sleep(20)
        FanoutReceivers.totals(counted)
      end)
      |> Enum.reduce_while(nil, fn totals, previous ->
        if totals == previous, do: {:halt, totals}, else: {:cont, totals}
      end)

    {messages / storm_receivers, events / storm_receivers, events * 1.0e9 / elapsed}
  end

  {plain_msgs, plain_events, plain_rate} = measure_storm.([])
  {coal_msgs, coal_events, coal_rate} = measure_storm.(coalesce: &FanoutBaselines.user_key/1)

  storm_row = fn label, msgs, events, rate ->
    [
      {"#{storm_updates} updates from #{users.(storm_updates)} users → #{storm_receivers} receivers",
       label},
      {"messages per receiver", :erlang.float_to_binary(msgs * 1.0, decimals: 1)},
      {"fewer messages than per-update", ratio.(storm_updates, msgs)},
      {"events per receiver", :erlang.float_to_binary(events * 1.0, decimals: 1)},
      {"delivered events/s", if(rate, do: Harness.format_rate(rate), else: "(not run)")}
    ]
  end

  Harness.run("fanout-batch", batch_jobs, [
    storm_row.("each update sent (computed)", storm_updates, storm_updates, nil),
    storm_row.("Batcher", plain_msgs, plain_events, plain_rate),
    storm_row.("Batcher, coalescing by user", coal_msgs, coal_events, coal_rate)
  ])
end

# ---------------------------------------------------------------------------
# Scheduler probe during a 1M fan-out
#
# The receivers are suspended: a million woken receivers would queue ahead
# of the probe on the run queues whatever sends to them, and the probe is
# about whether the sender holds a scheduler. Each row starts from fresh
# receivers (their mailboxes grow while suspended).

if section?.("probe") do
  probe_n = Harness.pick(1_000_000, 100_000)
  duration = Harness.pick(3_000, 1_000)
  # The default process limit (262,144) is below a million: the list then
  # repeats each receiver, still probe_n deliveries per fan-out. Run with
  # `elixir --erl "+P 2000000" -S mix run bench/fanout.exs` for a million
  # distinct receivers.
  room = :erlang.system_info(:process_limit) - :erlang.system_info(:process_count) - 20_000
  distinct = min(probe_n, room)
  IO.puts("probe: #{probe_n} deliveries per fan-out to #{distinct} distinct receivers")

  fresh_suspended = fn ->
    pids =
      for _ <- 1..distinct do
        pid = spawn(fn -> Process.sleep(:infinity) end)
        :erlang.suspend_process(pid)
        pid
      end

    {pids, pids |> Stream.cycle() |> Enum.take(probe_n)}
  end

  probe_row = fn label, make_work ->
    {distinct_pids, list} = fresh_suspended.()
    stats = SchedulerProbe.measure(make_work.(list), duration_ms: duration)
    Enum.each(distinct_pids, &Process.exit(&1, :kill))
    SchedulerProbe.row(label, stats)
  end

  probe_rows = [
    SchedulerProbe.row(
      "idle (no fan-out)",
      SchedulerProbe.measure(fn -> Process.sleep(1) end, duration_ms: duration)
    ),
    probe_row.("Enum.each + send/2, #{probe_n} receivers", fn pids ->
      fn -> FanoutBaselines.each_send(pids, small) end
    end),
    probe_row.("Fanout.send, #{probe_n} receivers", fn pids ->
      fn -> Fanout.send(pids, small) end
    end),
    probe_row.("Fanout.send offload + sync, #{probe_n} receivers", fn pids ->
      fn ->
        Fanout.send(pids, small, offload: true)
        Fanout.sync()
      end
    end)
  ]

  Harness.run("fanout-probe", [], probe_rows)
end
