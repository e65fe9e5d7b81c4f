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
end
