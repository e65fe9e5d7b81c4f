# A guild's member changes (presence, join, leave in turn) at the
# simulator's default scale: 100,000 members, 25,000 connected receivers
# (90% passive, the active ones subscribed to the member list's [0, 99],
# one in five of them also to a second window, so past 15,000 relays
# forward the updates). Reports the guild's own histograms (`op_ns`: the
# whole change in the guild, `list_ns`: the member list's share), the
# figures the simulator reports as member_op_us / member_list_us, in two
# rounds of the same guild:
#
#   * quiet: one change after another, nothing else running;
#   * traffic: three events published to the receivers between two
#     changes (one in 20 essential, so to all 25,000), each fanned out by
#     the relays before the next change, as the simulator's driver does.
#     The receivers keep their last 64 messages. The guild then finds its
#     data and code cold at each change, as in the simulator.
#
#   MIX_ENV=prod mix run bench/guild_ops.exs
#   GUILD_OPS_MODES=native MIX_ENV=prod mix run bench/guild_ops.exs
Code.require_file("support/harness.ex", __DIR__)

import Bitwise

alias Switchboard.Bench.Harness
alias Switchboard.Guild
alias Switchboard.Session.Metrics

:rand.seed(:exsss, {1, 2, 3})
members_count = Harness.pick(100_000, 10_000)
receivers = Harness.pick(25_000, 2_500)
ops = Harness.pick(1_500, 300)

statuses =
  {:online, :idle, :dnd, :offline, :offline, :offline, :offline, :offline, :offline, :offline}

member = fn id ->
  %{
    id: id,
    name: "u" <> Integer.to_string(:rand.uniform(1 <<< 30), 36),
    status: elem(statuses, :rand.uniform(10) - 1),
    hoist: if(:rand.uniform(50) == 1, do: {90, "admins"}),
    roles: []
  }
end

results =
  for mode <- System.get_env("GUILD_OPS_MODES", "native,pure") |> String.split(",") do
    mode = String.to_existing_atom(mode)

    {:ok, guild} =
      Guild.start({:guild_ops, mode}, mode: mode, members: Enum.map(1..members_count, member))

    sink = fn sink, kept, count ->
      receive do
        :stop -> :ok
        message when count < 64 -> sink.(sink, [message | kept], count + 1)
        message -> sink.(sink, [message], 1)
      end
    end

    # As the simulator's: one of [100, 199] .. [2000, 2099].
    second_window = fn n -> [100 * rem(n, 20) + 100, 100 * rem(n, 20) + 199] end

    pids =
      for i <- 1..receivers do
        pid = spawn(fn -> sink.(sink, [], 0) end)
        passive = rem(i, 10) != 0

        ranges =
          cond do
            passive -> []
            rem(i, 50) == 0 -> [[0, 99], second_window.(div(i, 50))]
            true -> [[0, 99]]
          end

        {:ok, _, _, _, _} = Guild.connect(guild, pid, passive: passive, ranges: ranges)
        pid
      end

    relays = Guild.stats(guild).relay_pids

    drained = fn drained ->
      if Enum.any?(relays, &(elem(Process.info(&1, :message_queue_len), 1) > 0)) do
        Process.sleep(0)
        drained.(drained)
      end
    end

    traffic = fn k ->
      for j <- 1..3 do
        data = %{"id" => k * 3 + j, "channel_id" => 5, "content" => "lorem ipsum dolor sit"}
        Guild.publish(guild, {"MESSAGE_CREATE", data}, essential: rem(k * 3 + j, 20) == 0)
      end

      drained.(drained)
    end

    run = fn count, offset, busy ->
      for k <- 1..count do
        if busy, do: traffic.(k)

        case rem(k, 3) do
          0 ->
            status = Enum.random([:online, :idle, :dnd, :offline])
            Guild.update_presence(guild, :rand.uniform(members_count), status)

          1 ->
            Guild.join(guild, member.(offset + k))

          2 ->
            Guild.leave(guild, offset + k - 1)
        end
      end
    end

    us = fn histogram, q -> Float.round(Metrics.percentile(histogram, q) / 1000, 1) end

    # Warm-up, then the histograms' difference is the measured changes.
    measure = fn offset, busy, count ->
      run.(div(count, 10), offset, busy)
      before = Guild.stats(guild)
      run.(count, offset + 1_000_000, busy)
      after_ = Guild.stats(guild)

      diff = fn key ->
        old = Map.new(before[key])

        for {bound, count} <- after_[key],
            count > Map.get(old, bound, 0),
            do: {bound, count - Map.get(old, bound, 0)}
      end

      op = diff.(:op_ns)
      list = diff.(:list_ns)
      {us.(op, 0.5), us.(op, 0.99), us.(list, 0.5)}
    end

    IO.puts(:stderr, "  #{mode}: #{receivers} receivers connected")
    quiet = measure.(10_000_000, false, ops)
    IO.puts(:stderr, "  #{mode}: quiet round done")
    busy = measure.(20_000_000, true, div(ops, 10))
    for pid <- pids, do: send(pid, :stop)
    Guild.stop(guild)
    {mode, quiet, busy}
  end

row = fn {mode, {q50, q99, qlist}, {b50, b99, blist}} ->
  ratio = Harness.format_ratio(b50 / q50)
  "| #{mode} | #{q50} / #{q99} / #{qlist} | #{b50} / #{b99} / #{blist} | #{ratio} |"
end

IO.puts("""
#{ops} member changes quiet, #{div(ops, 10)} with traffic, #{members_count} members, #{receivers} receivers; change p50 / p99 / member list's share p50 (bucket upper bounds, µs):

| mode | quiet | traffic (3 events between changes) | traffic / quiet p50 |
|---|---:|---:|---:|
#{Enum.map_join(results, "\n", row)}
""")
