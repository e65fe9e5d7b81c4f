defmodule Switchboard.SessionTest do
  use ExUnit.Case, async: true

  import Switchboard.Test.RuntimeClient

  alias Switchboard.{Guild, Session}
  alias Switchboard.Session.Metrics

  setup do
    id = System.unique_integer([:positive])
    guild = start_supervised!({Guild, id: id, members: [member(1)]})
    %{guild: guild, guild_id: id}
  end

  test "a session keeps no frames with replay_limit 0 and takes spawn options", %{guild: guild} do
    session = start_session(replay_limit: 0, spawn_opt: [min_heap_size: 1_000])
    assert {:min_heap_size, size} = Process.info(session, :min_heap_size)
    assert size >= 1_000
    :ok = Session.attach(session, guild)
    for n <- 1..3, do: Guild.publish(guild, {"MESSAGE_CREATE", %{"n" => n}})
    Guild.publish(guild, {"BARRIER", %{}})
    frames = collect_until([session], &(&1["t"] == "BARRIER"))[session]
    assert Enum.map(frames, & &1["s"]) == [1, 2, 3, 4]
    assert %{frames: 4, seq: 4} = Session.stats(session)
    assert {:ok, []} = Session.resume(session, 4)
    assert {:error, :gone} = Session.resume(session, 3)
  end

  test "frames are numbered by the session and can be replayed after the last one seen", %{
    guild: guild
  } do
    session = start_session(replay_limit: 5)
    :ok = Session.attach(session, guild)
    for n <- 1..8, do: Guild.publish(guild, {"MESSAGE_CREATE", %{"n" => n}})
    Guild.publish(guild, {"BARRIER", %{}})
    frames = collect_until([session], &(&1["t"] == "BARRIER"))[session]
    assert Enum.map(frames, & &1["s"]) == Enum.to_list(1..9)

    assert {:ok, replayed} = Session.resume(session, 6)
    decoded = Enum.map(replayed, &:erlang.binary_to_term(IO.iodata_to_binary(&1)))
    assert Enum.map(decoded, & &1["s"]) == [7, 8, 9]
    assert Enum.map(decoded, & &1["d"]["n"]) == [7, 8, nil]

    assert {:ok, [_, _, _, _, _]} = Session.resume(session, 4)
    assert {:ok, []} = Session.resume(session, 9)
    assert {:error, :gone} = Session.resume(session, 3)
    assert {:error, :invalid_seq} = Session.resume(session, 10)
  end

  test "a backlog is written in order, in batches, with its queue off the heap only while it lasts",
       %{guild: guild} do
    session = start_session()
    :ok = Session.attach(session, guild)
    assert Process.info(session, :message_queue_data) == {:message_queue_data, :on_heap}

    # 300 events wait while the session is suspended: its first wake-ups
    # find full batches.
    :ok = :sys.suspend(session)
    for n <- 1..300, do: Guild.publish(guild, {"MESSAGE_CREATE", %{"n" => n}})
    :ok = :sys.resume(session)
    Guild.publish(guild, {"BARRIER", %{}})
    frames = collect_until([session], &(&1["t"] == "BARRIER"))[session]
    assert Enum.map(frames, & &1["s"]) == Enum.to_list(1..301)
    assert Enum.map(Enum.drop(frames, -1), & &1["d"]["n"]) == Enum.to_list(1..300)
    assert %{frames: 301, lost: 0, duplicated: 0, out_of_order: 0} = Session.stats(session)

    # Drained: back on the heap.
    assert Process.info(session, :message_queue_data) == {:message_queue_data, :on_heap}
  end

  test "frames queued for one wake-up are selected, numbered, checked, counted and kept as one at a time",
       %{guild: guild, guild_id: guild_id} do
    other = start_supervised!({Guild, id: :wake_other, members: [member(2)]}, id: :wake_other)

    select = fn
      "SKIPPED", _codec, _prepared -> :skip
      _type, codec, prepared -> {codec, prepared}
    end

    [batched, single] =
      for _ <- 1..2 do
        session = start_session(replay_limit: 5, select: select, metrics: Metrics.new())
        :ok = Session.attach(session, guild)
        :ok = Session.attach(session, other, passive: true)
        session
      end

    # The batched session sleeps while every message below is queued (the
    # guild sends before its publish returns), so it wakes up for all of
    # them; the other one takes each before the next (a call follows it).
    :ok = :sys.suspend(batched)
    codec = Switchboard.Codec.ETF
    raw = codec.prepare("RAW", %{})

    step = fn
      {:publish, to, type, opts} ->
        Guild.publish(to, {type, %{"type" => type}}, opts)

      {:raw, all_seq} ->
        for s <- [batched, single], do: send(s, raw_event(guild_id, all_seq, raw))
    end

    # Numbers out of turn (a gap filled late, a duplicate) between the two
    # guilds' frames, a frame left out, more frames than the replay limit.
    steps =
      [{:raw, 3}, {:raw, 2}, {:raw, 2}, {:publish, other, "B", [essential: true]}] ++
        for(n <- 1..4, do: {:publish, guild, "A#{n}", []}) ++
        [{:publish, guild, "SKIPPED", []}, {:publish, other, "C", [essential: true]}] ++
        for n <- 5..11, do: {:publish, guild, "A#{n}", []}

    for s <- steps do
      step.(s)
      Session.stats(single)
    end

    assert {:message_queue_len, length(steps)} == Process.info(batched, :message_queue_len)
    :ok = :sys.resume(batched)
    Guild.publish(guild, {"BARRIER", %{}})
    frames = collect_until([batched, single], &(&1["t"] == "BARRIER"))
    assert frames[batched] == frames[single]
    assert length(frames[batched]) == length(steps)
    refute Enum.any?(frames[batched], &(&1["t"] == "SKIPPED"))
    assert Enum.map(frames[batched], & &1["s"]) == Enum.to_list(1..length(steps))

    stats = Session.stats(batched)
    assert stats == Session.stats(single)
    # Raw 3 leaves 1 and 2 missing, raw 2 fills one late, then is a
    # duplicate; the guild's 1 fills the other, its 2 and 3 are duplicates.
    assert %{lost: 0, duplicated: 3, out_of_order: 2} = stats
    assert Session.resume(batched, stats.seq - 5) == Session.resume(single, stats.seq - 5)
    assert {:ok, [_, _, _, _, _]} = Session.resume(batched, stats.seq - 5)

    [m1, m2] = for s <- [batched, single], do: :sys.get_state(s).conf.metrics

    assert {Metrics.frames(m1), Metrics.event_frames(m1)} ==
             {Metrics.frames(m2), Metrics.event_frames(m2)}
  end

  test "a wake-up stops at the frame that takes the buffer past the limit" do
    guild = start_supervised!({Guild, id: :wake_slow, members: []}, id: :wake_slow)

    prepared =
      Switchboard.Codec.ETF.prepare("MESSAGE_CREATE", %{"x" => String.duplicate("x", 100)})

    size = IO.iodata_length(Switchboard.Codec.ETF.frame(prepared, 1))
    session = start_session(hold: true, buffer_limit: 3 * size - 1)
    Process.unlink(session)
    ref = Process.monitor(session)
    :ok = Session.attach(session, guild)
    :ok = :sys.suspend(session)

    for _ <- 1..6,
        do: Guild.publish(guild, {"MESSAGE_CREATE", %{"x" => String.duplicate("x", 100)}})

    :ok = :sys.resume(session)
    assert_receive {:DOWN, ^ref, :process, ^session, {:shutdown, {:slow_consumer, bytes}}}
    assert bytes == 3 * size
    frames = for _ <- 1..3, do: assert_receive({:frame, ^session, _frame, %{seq: seq}}) && seq
    assert frames == [1, 2, 3]
    refute_received {:frame, ^session, _, _}
  end

  test "a session whose mailbox holds more than :queue_limit frames after a full wake-up stops, counted; under the limit it goes on" do
    guild = start_supervised!({Guild, id: :queue_slow, members: []}, id: :queue_slow)
    slow = start_session(queue_limit: 100)
    fine = start_session(queue_limit: 200)
    for s <- [slow, fine], do: Process.unlink(s)
    refs = for s <- [slow, fine], do: Process.monitor(s)
    for s <- [slow, fine], do: :ok = Session.attach(s, guild)
    for s <- [slow, fine], do: :ok = :sys.suspend(s)
    before = Session.slow_disconnects()

    # 200 frames queued: a wake-up writes 64 and finds 136 still waiting.
    for i <- 1..200, do: {:ok, _} = Guild.publish(guild, {"MESSAGE_CREATE", %{"i" => i}})

    for s <- [slow, fine], do: :ok = :sys.resume(s)
    [slow_ref, fine_ref] = refs

    assert_receive {:DOWN, ^slow_ref, :process, ^slow,
                    {:shutdown, {:slow_consumer, {:queued, 136}}}}

    assert Session.slow_disconnects() - before >= 1
    assert Session.stats(fine).seq == 200
    refute_received {:DOWN, ^fine_ref, _, _, _}
    assert length(for _ <- 1..64, do: assert_receive({:frame, ^slow, _, _})) == 64
  end

  defmodule MetaTransport do
    @moduledoc false
    # Sends what the session passes as meta to `:to`; `meta?/1` exported
    # only by the module below.
    @behaviour Switchboard.Transport
    @impl true
    def init(opts), do: {:ok, opts[:to]}
    @impl true
    def send_frame(to, _frame, meta), do: {:ok, send(to, {:meta, meta}) && to}
    @impl true
    def buffered_bytes(_to), do: 0
    @impl true
    def close(_to, _reason), do: :ok
  end

  defmodule NoMetaTransport do
    @moduledoc false
    @behaviour Switchboard.Transport
    @impl true
    defdelegate init(opts), to: MetaTransport
    @impl true
    defdelegate send_frame(to, frame, meta), to: MetaTransport
    @impl true
    defdelegate buffered_bytes(to), to: MetaTransport
    @impl true
    defdelegate close(to, reason), to: MetaTransport
    @impl true
    def meta?(_to), do: false
  end

  test "a transport gets each frame's meta unless its meta?/1 says it reads none", %{guild: guild} do
    for {transport, expected} <- [
          {MetaTransport, [%{seq: 1, type: "A"}, %{seq: 2, type: "B"}]},
          {NoMetaTransport, [nil, nil]}
        ] do
      session = start_session(transport: {transport, to: self()})
      :ok = Session.attach(session, guild)
      :ok = :sys.suspend(session)
      for type <- ["A", "B"], do: Guild.publish(guild, {type, %{}})
      :ok = :sys.resume(session)
      assert Enum.map(expected, fn _ -> assert_receive({:meta, meta}) && meta end) == expected
      # Replayed onto a new transport, the same.
      {:ok, 2} = Session.resume(session, 0, transport: {transport, to: self()})
      assert Enum.map(expected, fn _ -> assert_receive({:meta, meta}) && meta end) == expected
      GenServer.stop(session)
    end

    sink = Switchboard.Transport.Sink

    assert {false, true} ==
             {sink.meta?(elem(sink.init([]), 1)), sink.meta?(elem(sink.init(forward: self()), 1))}
  end

  test "frames of two guilds and of none are replayed in order, each with its number", %{
    guild: guild
  } do
    other = start_supervised!({Guild, id: :other_guild, members: [member(2)]}, id: :other)
    session = start_session()
    :ok = Session.attach(session, guild)
    :ok = Session.attach(session, other)

    for n <- 1..3 do
      Guild.publish(guild, {"FIRST", %{"n" => n}})
      Guild.publish(other, {"SECOND", %{"n" => n}})

      :ok =
        Session.dispatch(
          session,
          "NONE",
          Switchboard.Codec.ETF,
          Switchboard.Codec.ETF.prepare("NONE", %{"n" => n})
        )
    end

    Guild.publish(guild, {"BARRIER", %{}})
    written = collect_until([session], &(&1["t"] == "BARRIER"))[session]
    assert {:ok, replayed} = Session.resume(session, 0)
    decoded = Enum.map(replayed, &:erlang.binary_to_term(IO.iodata_to_binary(&1)))
    assert decoded == written
    assert Enum.map(decoded, & &1["s"]) == Enum.to_list(1..length(written))

    assert Enum.frequencies(Enum.map(decoded, & &1["t"])) == %{
             "FIRST" => 3,
             "SECOND" => 3,
             "NONE" => 3,
             "BARRIER" => 1
           }

    assert {:ok, [_, _]} = Session.resume(session, length(written) - 2)
  end

  test "frames the guild no longer keeps, or of a guild that is gone, cannot be replayed" do
    guild = start_supervised!({Guild, id: :short_memory, replay_events: 3}, id: :short)
    session = start_session()
    :ok = Session.attach(session, guild)
    for n <- 1..5, do: Guild.publish(guild, {"MESSAGE_CREATE", %{"n" => n}})
    Guild.publish(guild, {"BARRIER", %{}})
    collect_until([session], &(&1["t"] == "BARRIER"))
    assert {:ok, [_, _, _]} = Session.resume(session, 3)
    assert {:error, :gone} = Session.resume(session, 2)
    stop_supervised!(:short)
    assert {:error, :gone} = Session.resume(session, 5)
  end

  test "a replay limit of 0 keeps nothing", %{guild: guild} do
    session = start_session(replay_limit: 0)
    :ok = Session.attach(session, guild)
    Guild.publish(guild, {"BARRIER", %{}})
    collect_until([session], &(&1["t"] == "BARRIER"))
    assert {:error, :gone} = Session.resume(session, 0)
  end

  test "the session checks the guild's stream and counts into shared metrics", %{guild: guild} do
    metrics = Metrics.new()
    session = start_session(metrics: metrics)
    :ok = Session.attach(session, guild, passive: true)
    Guild.publish(guild, {"MESSAGE_CREATE", %{}})
    for _ <- 1..4, do: Guild.publish(guild, {"CHANNEL_UPDATE", %{}}, essential: true)
    Guild.publish(guild, {"BARRIER", %{}}, essential: true)
    frames = collect_until([session], &(&1["t"] == "BARRIER"))[session]
    assert Enum.map(frames, & &1["t"]) == List.duplicate("CHANNEL_UPDATE", 4) ++ ["BARRIER"]
    assert Metrics.frames(metrics) == 5
    assert Metrics.event_frames(metrics) == 5
    # Frame 4 of the session had its latency taken.
    assert [{_, 1}] = Metrics.histogram(metrics)
    assert is_integer(Metrics.percentile(metrics, 0.5))

    # A number skipped by the stream is lost until it turns up (then it is
    # late); one seen before is a duplicate.
    id = hd(Session.stats(session).guilds)
    codec = Switchboard.Codec.ETF
    payload = codec.prepare("X", %{})
    send(session, {:"$sb_event", id, 10, 8, "X", codec, payload, 1, 0})
    assert %{lost: 2} = Session.stats(session)
    send(session, {:"$sb_event", id, 11, 6, "X", codec, payload, 1, 0})
    send(session, {:"$sb_event", id, 12, 6, "X", codec, payload, 1, 0})
    assert %{lost: 1, out_of_order: 1, duplicated: 1, frames: 8} = Session.stats(session)
  end

  test "attach by id finds the guild through the cluster; unknown ids are an error", %{
    guild_id: id
  } do
    session = start_session()
    assert :ok = Session.attach(session, id)
    assert Session.stats(session).guilds == [id]
    assert {:error, :no_guild} = Session.attach(session, :no_such_guild)
    assert {:error, :not_attached} = Session.subscribe(session, :no_such_guild, [[0, 99]])
    assert :ok = Session.subscribe(session, id, [[0, 99]])
    frames = collect_until([session], &(&1["t"] == "GUILD_MEMBER_LIST_UPDATE"))[session]
    assert [%{"d" => %{"ops" => [{:sync, [0, 99], [_, {:member, 1}]}]}}] = frames
  end

  describe "gateway hooks" do
    defp codec, do: Switchboard.Codec.ETF

    defp decoded_frames(session, count) do
      for _ <- 1..count do
        assert_receive {:frame, ^session, frame, meta}
        envelope = :erlang.binary_to_term(IO.iodata_to_binary(frame))
        assert meta == %{seq: envelope["s"], type: envelope["t"]}
        envelope
      end
    end

    test "select leaves frames out before numbering them, or swaps their payload", %{
      guild: guild
    } do
      select = fn
        "SKIPPED", _codec, _prepared -> :skip
        "SWAPPED", codec, _prepared -> {codec, codec.prepare("SWAPPED", %{"swapped" => true})}
        _type, codec, prepared -> {codec, prepared}
      end

      session = start_session(select: select)
      :ok = Session.attach(session, guild)

      for type <- ["A", "SKIPPED", "SWAPPED", "B"],
          do: Guild.publish(guild, {type, %{"n" => type}})

      frames = decoded_frames(session, 3)
      assert Enum.map(frames, &{&1["s"], &1["t"]}) == [{1, "A"}, {2, "SWAPPED"}, {3, "B"}]
      assert Enum.at(frames, 1)["d"] == %{"swapped" => true}
      # Replayed frames go through select again.
      {:ok, replayed} = Session.resume(session, 1)

      assert :erlang.binary_to_term(IO.iodata_to_binary(hd(replayed)))["d"] == %{
               "swapped" => true
             }
    end

    test "a greeting is numbered as the guild takes the session, before its events; dispatch/4 frames are kept",
         %{guild: guild} do
      session = start_session()
      :ok = Session.dispatch(session, "READY", codec(), codec().prepare("READY", %{"v" => 10}))
      greeting = {"GUILD_CREATE", codec(), codec().prepare("GUILD_CREATE", %{"id" => 1})}
      :ok = Session.attach(session, guild, greeting: greeting)
      Guild.publish(guild, {"MESSAGE_CREATE", %{}})
      frames = decoded_frames(session, 3)

      assert Enum.map(frames, &{&1["s"], &1["t"]}) == [
               {1, "READY"},
               {2, "GUILD_CREATE"},
               {3, "MESSAGE_CREATE"}
             ]

      {:ok, replayed} = Session.resume(session, 0)

      assert Enum.map(replayed, &:erlang.binary_to_term(IO.iodata_to_binary(&1))["t"]) ==
               ["READY", "GUILD_CREATE", "MESSAGE_CREATE"]
    end

    test "resume/3 replays onto a new transport, then the greeting, then what follows", %{
      guild: guild
    } do
      session = start_session()
      :ok = Session.attach(session, guild)
      for n <- 1..3, do: Guild.publish(guild, {"MESSAGE_CREATE", %{"n" => n}})
      assert length(decoded_frames(session, 3)) == 3

      resumed = {"RESUMED", codec(), codec().prepare("RESUMED", nil)}
      transport = {Switchboard.Transport.Sink, forward: self()}
      assert {:error, :invalid_seq} = Session.resume(session, 9, transport: transport)
      assert {:ok, 2} = Session.resume(session, 1, transport: transport, greeting: resumed)
      assert_receive {:closed, ^session, :resumed}
      Guild.publish(guild, {"MESSAGE_CREATE", %{"n" => 4}})
      frames = decoded_frames(session, 4)
      assert Enum.map(frames, & &1["s"]) == [2, 3, 4, 5]

      assert Enum.map(frames, & &1["t"]) == [
               "MESSAGE_CREATE",
               "MESSAGE_CREATE",
               "RESUMED",
               "MESSAGE_CREATE"
             ]
    end

    test "a session lingers after its owner went down, and a resume with a new owner keeps it" do
      owner = spawn(fn -> Process.sleep(:infinity) end)
      session = start_session(owner: owner, linger: 200)
      ref = Process.monitor(session)
      Process.exit(owner, :kill)
      new_owner = spawn(fn -> Process.sleep(:infinity) end)
      transport = {Switchboard.Transport.Sink, []}
      assert {:ok, 0} = Session.resume(session, 0, transport: transport, owner: new_owner)
      refute_receive {:DOWN, ^ref, _, _, _}, 400

      Process.exit(new_owner, :kill)
      assert_receive {:DOWN, ^ref, :process, ^session, :normal}, 2_000
    end

    test "with no linger the session ends with its owner" do
      owner = spawn(fn -> Process.sleep(:infinity) end)
      session = start_session(owner: owner)
      ref = Process.monitor(session)
      Process.exit(owner, :kill)
      assert_receive {:DOWN, ^ref, :process, ^session, :normal}
    end
  end

  defp raw_event(guild_id, all_seq, prepared),
    do: {:"$sb_event", guild_id, all_seq, 0, "RAW", Switchboard.Codec.ETF, prepared, 1, 0}
end
