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
# And the VM's own floor for a change, quiet and with the same traffic: a
# process (at the guild's priority) that does with OTP's own parts a
# subset of what a guild's change must do: look the member up in an ETS
# set of 100,000, store it back, move its sort key in an ETS ordered_set
# of 100,000 (delete + insert: the member list's reordering, without the
# rank or the ops), encode the event with `term_to_binary/1`, keep it in a
# replay table (insert + delete) and send it to 2 processes (as to the
# relays). Timed by the
# process itself around that work (exact percentiles, µs).
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

    # The VM's floor (see the header): same traffic, OTP's own parts; its
    # two relays drop what they get.
    discard = fn discard ->
      receive do
        :stop -> :ok
        _ -> discard.(discard)
      end
    end

    floor_relays = for _ <- relays, do: spawn(fn -> discard.(discard) end)

    floor_process = fn ->
      Process.flag(:priority, :high)
      table = :ets.new(:floor_members, [:set, :protected, read_concurrency: true])
      order = :ets.new(:floor_order, [:ordered_set, :protected])
      replay = :ets.new(:floor_replay, [:set, :protected])

      for id <- 1..members_count do
        m = member.(id)
        :ets.insert(table, {id, m})
        :ets.insert(order, {{m.status, m.name, id}})
      end

      loop = fn loop, key ->
        receive do
          {:change, from, id, status} ->
            started = System.monotonic_time()
            [{^id, old}] = :ets.lookup(table, id)
            new = %{old | status: status}
            :ets.insert(table, {id, new})
            :ets.delete(order, {old.status, old.name, id})
            :ets.insert(order, {{status, new.name, id}})

            data = %{"user_id" => id, "status" => Atom.to_string(status), "guild_id" => 1}
            frame = :erlang.term_to_binary(data)
            :ets.insert(replay, {key, "PRESENCE_UPDATE", frame})
            if key > 4096, do: :ets.delete(replay, key - 4096)
            for relay <- floor_relays, do: send(relay, {:floor, frame})
            took = System.monotonic_time() - started
            send(from, {:took, System.convert_time_unit(took, :native, :nanosecond)})
            loop.(loop, key + 1)

          :stop ->
            :ok
        end
      end

      loop.(loop, 1)
    end

    floor_pid = spawn(floor_process)

    measure_floor = fn count, busy ->
      times =
        for k <- 1..count do
          if busy, do: traffic.(k)
          status = Enum.random([:online, :idle, :dnd, :offline])
          send(floor_pid, {:change, self(), :rand.uniform(members_count), status})

          receive do
            {:took, ns} -> ns
          end
        end
        |> Enum.sort()
        |> List.to_tuple()

      at = fn q ->
        Float.round(
          elem(times, min(round(q * tuple_size(times)), tuple_size(times) - 1)) / 1000,
          1
        )
      end

      {at.(0.5), at.(0.99)}
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
    floor_quiet = measure_floor.(ops, false)
    floor_busy = measure_floor.(div(ops, 10), true)
    IO.puts(:stderr, "  #{mode}: VM floor rounds done")
    for pid <- [floor_pid | floor_relays], do: send(pid, :stop)
    for pid <- pids, do: send(pid, :stop)
    Guild.stop(guild)
    {mode, quiet, busy, floor_quiet, floor_busy}
  end

row = fn {mode, {q50, q99, qlist}, {b50, b99, blist}, {fq50, fq99}, {fb50, fb99}} ->
  ratio = Harness.format_ratio(b50 / q50)

  "| #{mode} | #{q50} / #{q99} / #{qlist} | #{b50} / #{b99} / #{blist} | #{ratio} | #{fq50} / #{fq99} | #{fb50} / #{fb99} |"
end

IO.puts("""
#{ops} member changes quiet, #{div(ops, 10)} with traffic, #{members_count} members, #{receivers} receivers; change p50 / p99 / member list's share p50 (bucket upper bounds, µs):

| mode | quiet | traffic (3 events between changes) | traffic / quiet p50 | VM floor quiet p50 / p99 | VM floor with traffic p50 / p99 |
|---|---:|---:|---:|---:|---:|
#{Enum.map_join(results, "\n", row)}
""")
