defmodule Switchboard.GuildTest do
  use ExUnit.Case, async: true

  import Switchboard.Test.RuntimeClient

  alias Switchboard.{Guild, Implementation, Session}

  for mode <- [:native, :pure], {relaying, threshold} <- [direct: 15_000, relayed: 4] do
    describe "#{mode}, #{relaying}" do
      @describetag mode: mode, threshold: threshold

      test "every session gets every event meant for it exactly once, in publish order; passive ones only essential events",
           %{mode: mode, threshold: threshold} do
        guild = start_guild(mode, threshold, for(id <- 1..30, do: member(id)))
        active = for _ <- 1..9, do: connect(guild, passive: false)
        passive = for _ <- 1..6, do: connect(guild, passive: true)

        if threshold < 15, do: assert(Guild.stats(guild).relays >= 3)

        events =
          for n <- 1..60 do
            essential = rem(n, 4) == 0
            data = %{"n" => n, "content" => String.duplicate("x", rem(n, 7) * 100)}

            assert {:ok, ^n} =
                     Guild.publish(guild, {"MESSAGE_CREATE", data}, essential: essential)

            {n, essential}
          end

        Guild.publish(guild, {"BARRIER", %{}}, essential: true)
        frames = collect_until(active ++ passive, &(&1["t"] == "BARRIER"))

        for session <- active ++ passive do
          got = frames[session] |> Enum.filter(&(&1["t"] == "MESSAGE_CREATE"))
          expected = for {n, essential} <- events, essential or session in active, do: n
          assert Enum.map(got, & &1["d"]["n"]) == expected
          # The session's own numbering: 1, 2, 3... without a gap.
          assert Enum.map(frames[session], & &1["s"]) == Enum.to_list(1..length(frames[session]))
          assert %{lost: 0, duplicated: 0, out_of_order: 0} = Session.stats(session)
        end
      end

      test "member-list updates at every session match the member list after every change",
           %{mode: mode, threshold: threshold} do
        :rand.seed(:exsss, {7, 7, 7})
        members = for id <- 1..60, do: random_member(id)
        guild = start_guild(mode, threshold, members)
        ranges = [[[0, 99]], [[0, 9], [20, 29]], [[10, 19]], [], [[0, 99], [100, 199]]]

        sessions =
          for {r, i} <- Enum.with_index(ranges) do
            {connect(guild, passive: i == 3, ranges: r), r}
          end

        model = Map.new(sessions, fn {s, _} -> {s, %{}} end)

        Enum.reduce(1..80, {model, 61}, fn step, {model, next_id} ->
          next_id = random_change(guild, next_id)
          Guild.publish(guild, {"BARRIER", %{"step" => step}}, essential: true)
          frames = collect_until(Enum.map(sessions, &elem(&1, 0)), &barrier?(&1, step))
          items = Implementation.modules(mode).member_list.items(Guild.member_list(guild))

          model =
            for {session, session_ranges} <- sessions, into: %{} do
              slots =
                frames
                |> Map.get(session, [])
                |> Enum.filter(&(&1["t"] == "GUILD_MEMBER_LIST_UPDATE"))
                |> Enum.reduce(model[session], &apply_ops(&2, &1["d"]["ops"]))

              assert shown(slots, session_ranges, length(items)) ==
                       expected(items, session_ranges),
                     "step #{step}, ranges #{inspect(session_ranges)}"

              for [first, last] <- session_ranges, i <- max(first, length(items))..last//1 do
                refute Map.has_key?(slots, i), "slot #{i} known past the list's end"
              end

              {session, slots}
            end

          {model, next_id}
        end)
      end
    end
  end

  test "a session that stops reading is disconnected and counted; the others get everything" do
    guild = start_guild(:native, 15_000, [member(1)])
    before = Session.slow_disconnects()
    slow = start_session(hold: true, buffer_limit: 20_000)
    Process.unlink(slow)
    ref = Process.monitor(slow)
    :ok = Session.attach(slow, guild)
    fast = for _ <- 1..3, do: connect(guild, [])
    payload = %{"content" => String.duplicate("y", 1_000)}
    for _ <- 1..40, do: Guild.publish(guild, {"MESSAGE_CREATE", payload})
    assert_receive {:DOWN, ^ref, :process, ^slow, {:shutdown, {:slow_consumer, bytes}}}
    assert bytes > 20_000
    assert Session.slow_disconnects() == before + 1
    Guild.publish(guild, {"BARRIER", %{}})
    frames = collect_until(fast, &(&1["t"] == "BARRIER"))
    for session <- fast, do: assert(length(frames[session]) == 41)
    assert Guild.stats(guild).sessions == 3
  end

  test "join, leave, presence and member updates change the table, the list and the counters" do
    guild = start_guild(:native, 15_000, [member(1), member(2)])
    assert :ok = Guild.join(guild, member(3, name: "carol"))
    assert :ok = Guild.update_presence(guild, 1, :idle)
    assert :ok = Guild.update_member(guild, member(2, name: "bobby"))
    assert {:error, :not_member} = Guild.update_presence(guild, 99, :online)
    assert {:error, :not_member} = Guild.update_member(guild, member(99))
    assert :ok = Guild.leave(guild, 3)
    assert {:error, :not_member} = Guild.leave(guild, 3)
    assert Guild.member(guild, 1).status == :idle
    assert Guild.member(guild, 2).name == "bobby"
    assert Guild.member(guild, 3) == nil
    assert Enum.sort(Enum.map(Guild.members(guild), & &1.id)) == [1, 2]
    assert Guild.scan(guild, fn _, n -> n + 1 end, 0) == 2
    stats = Guild.stats(guild)
    assert stats.member_ops == 4
    assert Enum.reduce(stats.op_ns, 0, fn {_, n}, sum -> sum + n end) == 4
    assert stats.all_seq == 4
  end

  test "member changes reach the runtime metrics in batches of 32, or within 100 ms" do
    guild = start_guild(:native, 15_000, Enum.map(1..40, &member/1))
    traced = {Switchboard.RuntimeMetrics, :member_changes, 1}
    on_exit(fn -> :erlang.trace_pattern(traced, false, [:local]) end)
    :erlang.trace(guild, true, [:call, tracer: self()])
    :erlang.trace_pattern(traced, true, [:local])

    for id <- 1..40, do: :ok = Guild.update_presence(guild, id, :dnd)
    # Batches of at most 32 (a paused machine may let the timer split them
    # sooner), the last one sent by the timer: no call asks for them.
    times = receive_batches(40)
    assert length(times) == 40
    assert Enum.all?(times, &(is_integer(&1) and &1 >= 0))

    # A reader of the guild's counters gets them all counted first.
    :ok = Guild.leave(guild, 1)
    assert Guild.stats(guild).member_ops == 41
    assert_receive {:trace, ^guild, :call, {_, :member_changes, [[_]]}}
  end

  test "bad members and ranges raise in the caller; the guild goes on" do
    guild = start_guild(:native, 15_000, [member(1)])
    session = start_session()

    assert_raise ArgumentError, ~r/expected a member/, fn -> Guild.join(guild, %{id: 2}) end

    assert_raise ArgumentError, ~r/expected a member/, fn ->
      Guild.update_member(guild, member(1, status: :away))
    end

    assert_raise ArgumentError, ~r/expected ranges/, fn ->
      Guild.connect(guild, session, ranges: [[0, 500]])
    end

    assert {:ok, _, 0, 0, _} = Guild.connect(guild, session)

    assert_raise ArgumentError, ~r/expected ranges/, fn ->
      Guild.subscribe_member_list(guild, session, [[10, 5]])
    end

    assert Guild.stats(guild).members == 1
  end

  test "relays end with their guild" do
    guild = start_guild(:native, 2, [member(1)])
    for _ <- 1..5, do: connect(guild, [])
    relays = Guild.stats(guild).relay_pids
    assert length(relays) == 3
    refs = Enum.map(relays, &Process.monitor/1)
    Guild.stop(guild)
    for ref <- refs, do: assert_receive({:DOWN, ^ref, :process, _, _})
  end

  test "a guild and its relays run at high priority by default, at the :priority given otherwise" do
    guild = start_guild(:native, 2, [member(1)])
    for _ <- 1..3, do: connect(guild, [])
    assert Process.info(guild, :priority) == {:priority, :high}
    relays = Guild.stats(guild).relay_pids
    assert length(relays) == 2
    for relay <- relays, do: assert(Process.info(relay, :priority) == {:priority, :high})

    normal =
      start_supervised!({Guild, id: :normal_priority, relay_threshold: 2, priority: :normal})

    for _ <- 1..3, do: connect(normal, [])
    assert Process.info(normal, :priority) == {:priority, :normal}

    for relay <- Guild.stats(normal).relay_pids,
        do: assert(Process.info(relay, :priority) == {:priority, :normal})

    assert_raise ArgumentError, ~r/priority must be :low, :normal or :high, got: :max/, fn ->
      Guild.start_link(id: :bad, priority: :max)
    end
  end

  test "a session that goes away is dropped from the guild and its subscriptions" do
    guild = start_guild(:native, 15_000, [member(1)])
    session = connect(guild, ranges: [[0, 99]])
    assert Guild.stats(guild).sessions == 1
    GenServer.stop(session)
    assert Guild.stats(guild).sessions == 0
    assert {:ok, 1} = Guild.publish(guild, {"MESSAGE_CREATE", %{}})
  end

  # ---------------------------------------------------------------------------

  defp receive_batches(0), do: []

  defp receive_batches(left) do
    assert_receive {:trace, _, :call, {_, :member_changes, [batch]}}
    assert length(batch) in 1..min(left, 32)
    batch ++ receive_batches(left - length(batch))
  end

  defp start_guild(mode, threshold, members) do
    id = System.unique_integer([:positive])
    opts = [id: id, mode: mode, relay_threshold: threshold, members: members]
    start_supervised!({Guild, opts})
  end

  defp connect(guild, opts) do
    session = start_session()
    :ok = Session.attach(session, guild, opts)
    session
  end

  defp barrier?(envelope, step), do: envelope["t"] == "BARRIER" and envelope["d"]["step"] == step

  defp random_member(id) do
    member(id,
      name: Enum.random(["ann", "bob", "cat", "dan", "eve"]) <> "#{rem(id, 3)}",
      status: Enum.random([:online, :idle, :dnd, :offline, :offline]),
      hoist: Enum.random([nil, nil, {1, "mods"}, {5, "admins"}])
    )
  end

  defp random_change(guild, next_id) do
    existing = Guild.members(guild)

    case {Enum.random(1..5), existing} do
      {1, _} ->
        :ok = Guild.join(guild, random_member(next_id))
        next_id + 1

      {_, []} ->
        next_id

      {2, _} ->
        :ok = Guild.leave(guild, Enum.random(existing).id)
        next_id

      {3, _} ->
        status = Enum.random([:online, :idle, :dnd, :offline])
        :ok = Guild.update_presence(guild, Enum.random(existing).id, status)
        next_id

      {_, _} ->
        member = Enum.random(existing)
        :ok = Guild.update_member(guild, %{random_member(member.id) | status: member.status})
        next_id
    end
  end

  defmodule ShapedPayloads do
    @moduledoc false
    def member_event(type, member, guild_id),
      do: %{"shaped" => type, "id" => member.id, "g" => guild_id}

    def member_list_update(guild_id, ops, counts, table) do
      names =
        for {:sync, _, items} <- ops,
            {:member, id} <- items,
            do: :ets.lookup_element(table, id, 2).name

      %{"g" => guild_id, "online" => counts.online_count, "names" => names}
    end
  end

  test "options :name, :codec and :payloads: a named guild framing with its codec, in its shapes" do
    name = :"shaped_guild_#{System.unique_integer([:positive])}"

    start_supervised!(
      {Guild,
       id: :shaped,
       name: name,
       register: false,
       members: [member(1), member(2, status: :offline)],
       codec: Switchboard.Codec.JSON,
       payloads: ShapedPayloads}
    )

    session =
      start_supervised!({Session, transport: {Switchboard.Transport.Sink, forward: self()}})

    :ok = Session.attach(session, Process.whereis(name), ranges: [[0, 9]])
    :ok = Guild.update_presence(name, 2, :online)
    :ok = Guild.leave(name, 1)

    frames =
      for _ <- 1..5 do
        assert_receive {:frame, ^session, frame, _meta}
        Switchboard.Json.decode!(IO.iodata_to_binary(frame))
      end

    assert [
             %{
               "t" => "GUILD_MEMBER_LIST_UPDATE",
               "d" => %{"g" => "shaped", "online" => 1, "names" => ["user1", "user2"]}
             },
             %{"t" => "GUILD_MEMBER_LIST_UPDATE", "d" => %{"online" => 2}},
             %{"t" => "PRESENCE_UPDATE", "d" => %{"shaped" => "PRESENCE_UPDATE", "id" => 2}},
             %{"t" => "GUILD_MEMBER_LIST_UPDATE", "d" => %{"online" => 1}},
             %{
               "t" => "GUILD_MEMBER_REMOVE",
               "d" => %{"shaped" => "GUILD_MEMBER_REMOVE", "id" => 1}
             }
           ] = frames
  end
end
