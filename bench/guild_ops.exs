# A guild's member changes (presence, join, leave in turn) at the
# simulator's default scale, away from the simulator's fan-out traffic:
# 100,000 members, 25,000 connected receivers (90% passive, the active
# ones subscribed to the member list's [0, 99], so past 15,000 relays
# forward the updates). Reports the guild's own histograms (`op_ns`: the
# whole change in the guild, `list_ns`: the member list's share), the
# figures the simulator reports as member_op_us / member_list_us.
#
#   MIX_ENV=prod mix run bench/guild_ops.exs
Code.require_file("support/harness.ex", __DIR__)

import Bitwise

alias Switchboard.Bench.Harness
alias Switchboard.Guild
alias Switchboard.Session.Metrics

:rand.seed(:exsss, {1, 2, 3})
members_count = Harness.pick(100_000, 10_000)
receivers = Harness.pick(25_000, 2_500)
ops = Harness.pick(3_000, 300)

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
  for mode <- [:native, :pure] do
    {:ok, guild} =
      Guild.start({:guild_ops, mode}, mode: mode, members: Enum.map(1..members_count, member))

    sink = fn sink ->
      receive do
        :stop -> :ok
        _ -> sink.(sink)
      end
    end

    pids =
      for i <- 1..receivers do
        pid = spawn(fn -> sink.(sink) end)
        passive = rem(i, 10) != 0
        ranges = if passive, do: [], else: [[0, 99]]
        {:ok, _, _, _, _} = Guild.connect(guild, pid, passive: passive, ranges: ranges)
        pid
      end

    run = fn count, offset ->
      for k <- 1..count do
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

    # Warm-up, then the histograms' difference is the measured changes.
    run.(div(ops, 10), 10_000_000)
    before = Guild.stats(guild)
    run.(ops, 20_000_000)
    after_ = Guild.stats(guild)

    diff = fn key ->
      old = Map.new(before[key])

      for {bound, count} <- after_[key],
          count > Map.get(old, bound, 0),
          do: {bound, count - Map.get(old, bound, 0)}
    end

    us = fn histogram, q -> Float.round(Metrics.percentile(histogram, q) / 1000, 1) end
    op = diff.(:op_ns)
    list = diff.(:list_ns)
    for pid <- pids, do: send(pid, :stop)
    Guild.stop(guild)
    {mode, us.(op, 0.5), us.(op, 0.99), us.(list, 0.5)}
  end

IO.puts("""
#{ops} member changes, #{members_count} members, #{receivers} receivers (bucket upper bounds, µs):

| mode | change p50 | change p99 | member list's share p50 |
|---|---:|---:|---:|
#{Enum.map_join(results, "\n", fn {mode, p50, p99, list} -> "| #{mode} | #{p50} | #{p99} | #{list} |" end)}
""")
