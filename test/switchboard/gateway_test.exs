defmodule Switchboard.GatewayTest do
  # Real clients: npm's ws under Node (test/js/driver.js) for the protocol,
  # and a raw :gen_tcp client for frames a library would never send.
  # Not async: the Node clients would take the CPU from other suites' timed
  # tests on a small machine.
  use ExUnit.Case, async: false

  alias Switchboard.Erlpack
  alias Switchboard.Gateway
  alias Switchboard.Test.{NodeClient, RawClient}

  @token "test-token"
  @identify %{
    "op" => 2,
    "d" => %{
      "token" => @token,
      # GUILDS, GUILD_MESSAGES and MESSAGE_CONTENT.
      "intents" => 513 + 32_768,
      "properties" => %{"os" => "linux", "browser" => "test", "device" => "test"}
    }
  }

  defp start_gateway(opts \\ []) do
    name = :"gateway_#{System.unique_integer([:positive])}"

    opts =
      Keyword.merge(
        [name: name, port: 0, tokens: [@token, {"plain-token", false}], guilds: 2, members: 3],
        opts
      )

    start_supervised!({Gateway, opts}, id: name)
    name
  end

  defp url(name, query \\ "v=10&encoding=json"), do: Gateway.url(name) <> "/?" <> query

  defp driver, do: start_supervised!(NodeClient)

  # Connects and identifies; returns READY's data.
  defp identify(driver, id, url, opts \\ []) do
    NodeClient.connect(driver, id, url, opts)
    assert %{"event" => "open"} = NodeClient.next(driver, id)
    assert %{"op" => 10} = NodeClient.payload(driver, id)
    NodeClient.send_payload(driver, id, Keyword.get(opts, :identify, @identify))
    assert %{"op" => 0, "t" => "READY", "s" => 1, "d" => ready} = NodeClient.payload(driver, id)
    ready
  end

  defp guild_creates(driver, id, count),
    do: for(_ <- 1..count, do: NodeClient.payload(driver, id))

  defp first_guild(name), do: hd(Gateway.config(name).guild_ids)

  defp close_code(driver, id) do
    %{"code" => code} = NodeClient.until(driver, id, &(&1["event"] == "close"))
    code
  end

  # A client ready on a fresh gateway sends one command (its data made from
  # the first guild's id); the close code it gets.
  defp close_after_ready(op, data) do
    name = start_gateway()
    driver = driver()
    identify(driver, "a", url(name))
    guild_creates(driver, "a", 2)
    NodeClient.send_payload(driver, "a", %{"op" => op, "d" => data.(first_guild(name))})
    close_code(driver, "a")
  end

  defp publish_messages(name, guild_id, range) do
    for n <- range,
        do: :ok = Gateway.publish(name, guild_id, "MESSAGE_CREATE", %{"content" => "m#{n}"})
  end

  describe "identify" do
    test "HELLO, READY with the session and unavailable guilds, then GUILD_CREATE per guild" do
      name = start_gateway(heartbeat_interval: 12_345)
      driver = driver()
      NodeClient.connect(driver, "a", url(name))
      assert %{"event" => "open"} = NodeClient.next(driver, "a")

      assert NodeClient.payload(driver, "a") == %{
               "op" => 10,
               "d" => %{"heartbeat_interval" => 12_345}
             }

      NodeClient.send_payload(driver, "a", @identify)

      assert %{"op" => 0, "s" => 1, "t" => "READY", "d" => ready} =
               NodeClient.payload(driver, "a")

      assert ready["v"] == 10
      assert ready["user"]["bot"] == true
      assert is_binary(ready["user"]["id"])
      assert byte_size(ready["session_id"]) == 32
      assert ready["resume_gateway_url"] == Gateway.url(name)
      guild_ids = Gateway.config(name).guild_ids
      assert ready["guilds"] == Enum.map(guild_ids, &%{"id" => &1, "unavailable" => true})

      creates = guild_creates(driver, "a", 2)
      assert Enum.map(creates, & &1["s"]) == [2, 3]
      assert Enum.map(creates, & &1["t"]) == ["GUILD_CREATE", "GUILD_CREATE"]
      assert Enum.map(creates, & &1["d"]["id"]) == guild_ids

      for %{"d" => guild} <- creates do
        assert guild["unavailable"] == false
        assert [_ | _] = text = Enum.filter(guild["channels"], &(&1["type"] == 0))
        assert Enum.map(text, & &1["name"]) == ["general", "random", "bots"]
        assert guild["member_count"] == 5
      end
    end

    test "sharded IDENTIFY gets only its shard's guilds" do
      name = start_gateway(guilds: 4)
      driver = driver()
      identify = put_in(@identify, ["d", "shard"], [1, 2])
      ready = identify(driver, "a", url(name), identify: identify)
      ids = Enum.map(ready["guilds"], & &1["id"])
      assert ids != []
      assert Enum.all?(ids, &(rem(Bitwise.bsr(String.to_integer(&1), 22), 2) == 1))
      assert ready["shard"] == [1, 2]
    end
  end

  describe "dispatches" do
    test "MESSAGE_CREATE reaches every session of the guild, numbered per session" do
      name = start_gateway()
      driver = driver()
      identify(driver, "a", url(name))
      guild_creates(driver, "a", 2)
      identify(driver, "b", url(name))
      guild_creates(driver, "b", 2)
      publish_messages(name, first_guild(name), 1..5)

      for id <- ["a", "b"] do
        got = for _ <- 1..5, do: NodeClient.payload(driver, id)
        assert Enum.map(got, & &1["s"]) == Enum.to_list(4..8)
        assert Enum.map(got, & &1["d"]["content"]) == Enum.map(1..5, &"m#{&1}")
      end
    end

    test "PRESENCE_UPDATE (op 3) reaches the guild's sessions" do
      name = start_gateway()
      driver = driver()
      identify = put_in(@identify, ["d", "intents"], 513 + 256 + 32_768)
      ready = identify(driver, "a", url(name), identify: identify)
      guild_creates(driver, "a", 2)

      NodeClient.send_payload(driver, "a", %{
        "op" => 3,
        "d" => %{"status" => "idle", "activities" => [], "since" => nil, "afk" => false}
      })

      updates = for _ <- 1..2, do: NodeClient.payload(driver, "a")
      assert Enum.map(updates, & &1["t"]) == ["PRESENCE_UPDATE", "PRESENCE_UPDATE"]
      assert Enum.map(updates, & &1["d"]["guild_id"]) == Gateway.config(name).guild_ids

      assert Enum.all?(
               updates,
               &(&1["d"]["status"] == "idle" and &1["d"]["user"]["id"] == ready["user"]["id"])
             )
    end

    test "REQUEST_GUILD_MEMBERS (op 8) is answered with GUILD_MEMBERS_CHUNK" do
      name = start_gateway(members: 120)
      driver = driver()
      identify(driver, "a", url(name))
      guild_creates(driver, "a", 2)
      guild_id = first_guild(name)
      request = %{"guild_id" => guild_id, "query" => "user1", "limit" => 0, "nonce" => "n1"}
      NodeClient.send_payload(driver, "a", %{"op" => 8, "d" => request})
      assert %{"t" => "GUILD_MEMBERS_CHUNK", "d" => chunk} = NodeClient.payload(driver, "a")
      assert chunk["guild_id"] == guild_id
      assert chunk["nonce"] == "n1"
      assert %{"chunk_index" => 0, "chunk_count" => 1} = chunk
      names = Enum.map(chunk["members"], & &1["user"]["username"]) |> Enum.sort()
      # Past the 100 members GUILD_CREATE lists.
      expected = ["user1"] ++ Enum.map(10..19, &"user#{&1}") ++ Enum.map(100..120, &"user#{&1}")
      assert names == Enum.sort(expected)
    end

    test "all members in chunks of 1,000: each member exactly once, chunk_index/chunk_count right; then rate limited" do
      name = start_gateway(guilds: 1, members: 2_498)
      driver = driver()
      # GUILD_MEMBERS (1 << 1) is required to ask for every member.
      identify(driver, "a", url(name), identify: put_in(@identify, ["d", "intents"], 513 + 2))
      guild_creates(driver, "a", 1)
      guild_id = first_guild(name)
      request = %{"guild_id" => guild_id, "query" => "", "limit" => 0, "nonce" => "all"}
      NodeClient.send_payload(driver, "a", %{"op" => 8, "d" => request})
      chunks = for _ <- 1..3, do: NodeClient.payload(driver, "a", 60_000)
      assert Enum.map(chunks, & &1["t"]) == List.duplicate("GUILD_MEMBERS_CHUNK", 3)
      assert Enum.map(chunks, & &1["d"]["chunk_index"]) == [0, 1, 2]
      assert Enum.all?(chunks, &(&1["d"]["chunk_count"] == 3 and &1["d"]["nonce"] == "all"))
      assert Enum.map(chunks, &length(&1["d"]["members"])) == [1_000, 1_000, 500]
      ids = for c <- chunks, m <- c["d"]["members"], do: m["user"]["id"]
      members = Switchboard.Guild.members(Gateway.guild(name, guild_id))
      assert Enum.sort(ids) == Enum.sort(Enum.map(members, & &1.id))
      assert length(Enum.uniq(ids)) == 2_500

      # A second request for every member within the interval.
      NodeClient.send_payload(driver, "a", %{"op" => 8, "d" => %{request | "nonce" => "again"}})
      assert %{"op" => 0, "t" => "RATE_LIMITED", "d" => limited} = NodeClient.payload(driver, "a")
      assert %{"opcode" => 8, "meta" => %{"guild_id" => ^guild_id, "nonce" => "again"}} = limited
      assert limited["retry_after"] > 0 and limited["retry_after"] <= 30

      # Requests by id or by query are not limited.
      ids = [hd(ids), "123"]

      NodeClient.send_payload(driver, "a", %{
        "op" => 8,
        "d" => %{"guild_id" => guild_id, "user_ids" => ids, "nonce" => "ids"}
      })

      assert %{"t" => "GUILD_MEMBERS_CHUNK", "d" => by_id} = NodeClient.payload(driver, "a")
      assert Enum.map(by_id["members"], & &1["user"]["id"]) == [hd(ids)]
      assert by_id["not_found"] == ["123"]
      assert %{"chunk_index" => 0, "chunk_count" => 1, "nonce" => "ids"} = by_id
    end

    test "asking for every member without the GUILD_MEMBERS intent closes with 4014" do
      request = &%{"guild_id" => &1, "query" => "", "limit" => 0}
      assert close_after_ready(8, request) == 4014
    end

    test "events are filtered by intents" do
      name = start_gateway()
      driver = driver()
      # GUILDS and GUILD_MESSAGE_TYPING, no GUILD_MESSAGES.
      identify(driver, "a", url(name), identify: put_in(@identify, ["d", "intents"], 1 + 2_048))
      guild_creates(driver, "a", 2)
      publish_messages(name, first_guild(name), 1..2)
      :ok = Gateway.publish(name, first_guild(name), "MESSAGE_REACTION_ADD", %{"x" => 0})
      :ok = Gateway.publish(name, first_guild(name), "TYPING_START", %{"x" => 1})
      assert %{"t" => "TYPING_START", "s" => 4} = NodeClient.payload(driver, "a")
    end

    test "MESSAGE_CONTENT: without it a message not mentioning the bot has its content emptied" do
      name = start_gateway(guilds: 1, tokens: [@token, "other-token"])
      driver = driver()
      identify(driver, "with", url(name))
      plain = put_in(@identify, ["d", "token"], "other-token") |> put_in(["d", "intents"], 513)
      bot = identify(driver, "without", url(name), identify: plain)["user"]["id"]
      for id <- ["with", "without"], do: guild_creates(driver, id, 1)

      message = %{
        "content" => "secret",
        "embeds" => [%{"title" => "e"}],
        "attachments" => [%{"id" => "1"}],
        "components" => [%{"type" => 1}],
        "mentions" => [],
        "author" => %{"id" => "9"}
      }

      :ok = Gateway.publish(name, first_guild(name), "MESSAGE_CREATE", message)
      mentioning = %{message | "mentions" => [%{"id" => bot}]}
      :ok = Gateway.publish(name, first_guild(name), "MESSAGE_CREATE", mentioning)

      assert %{"d" => ^message} = NodeClient.payload(driver, "with")
      assert %{"d" => ^mentioning} = NodeClient.payload(driver, "with")

      assert %{"d" => redacted} = NodeClient.payload(driver, "without")

      assert redacted == %{
               message
               | "content" => "",
                 "embeds" => [],
                 "attachments" => [],
                 "components" => []
             }

      assert %{"d" => ^mentioning} = NodeClient.payload(driver, "without")
    end

    test "GUILD_MEMBERS and GUILD_PRESENCES gate member and presence events" do
      name = start_gateway(guilds: 1)
      driver = driver()
      members = put_in(@identify, ["d", "intents"], 513 + 2)
      identify(driver, "members", url(name), identify: members)

      identify(driver, "presences", url(name),
        identify: put_in(@identify, ["d", "intents"], 513 + 256)
      )

      for id <- ["members", "presences"], do: guild_creates(driver, id, 1)
      guild = Gateway.guild(name, first_guild(name))
      user = %{"id" => "77", "username" => "newcomer", "bot" => false}

      :ok =
        Switchboard.Guild.join(guild, Gateway.Payloads.member(Gateway.Demo.member(user), :online))

      :ok = Switchboard.Guild.update_presence(guild, "77", :idle)
      publish_messages(name, first_guild(name), [1])

      assert %{"t" => "GUILD_MEMBER_ADD", "d" => %{"user" => ^user}} =
               NodeClient.payload(driver, "members")

      assert %{"t" => "MESSAGE_CREATE"} = NodeClient.payload(driver, "members")

      assert %{"t" => "PRESENCE_UPDATE", "d" => %{"user" => %{"id" => "77"}, "status" => "idle"}} =
               NodeClient.payload(driver, "presences")

      assert %{"t" => "MESSAGE_CREATE"} = NodeClient.payload(driver, "presences")
    end
  end

  describe "lazy member list (op 14)" do
    defp list_keys(guild) do
      list = Switchboard.Guild.member_list(guild)

      for item <- Switchboard.Implementation.modules().member_list.items(list) do
        case item do
          {:group, id, count} -> "g:#{id}:#{count}"
          {:member, id} -> "m:#{id}:#{Switchboard.Guild.member(guild, id).status}"
        end
      end
    end

    # Waits until the client has read everything the guild sent before now.
    defp barrier(name, driver, id, guild_id, tag) do
      :ok = Gateway.publish(name, guild_id, "MESSAGE_CREATE", %{"content" => tag})
      NodeClient.until(driver, id, &(&1["payload"]["d"]["content"] == tag))
    end

    defp assert_same_list(name, driver, id, guild_id) do
      guild = Gateway.guild(name, guild_id)
      barrier(name, driver, id, guild_id, "barrier-#{System.unique_integer()}")
      NodeClient.command(driver, %{cmd: "list", id: id})
      event = NodeClient.until(driver, id, &(&1["event"] == "list"))
      expected = list_keys(guild)
      # Subscribed to [0, 99]: every item of the list, nothing past its end.
      {shown, past_end} = Enum.split(event["slots"], length(expected))
      assert shown == expected
      assert Enum.all?(past_end, &is_nil/1)

      counts =
        Switchboard.Implementation.modules().member_list.counts(
          Switchboard.Guild.member_list(guild)
        )

      assert event["member_count"] == counts.member_count
      assert event["online_count"] == counts.online_count
      assert event["groups"] == for({g, n} <- counts.groups, do: %{"id" => g, "count" => n})
    end

    test "GUILD_MEMBER_LIST_UPDATE ops keep a client's list equal to the guild's through presence changes" do
      name = start_gateway(guilds: 1, members: 12, tokens: [@token, "other-token"])
      driver = driver()
      guild_id = first_guild(name)
      identify(driver, "a", url(name))
      [create] = guild_creates(driver, "a", 1)
      channel = hd(create["d"]["channels"])["id"]

      NodeClient.send_payload(driver, "a", %{
        "op" => 14,
        "d" => %{"guild_id" => guild_id, "channels" => %{channel => [[0, 99]]}}
      })

      assert %{"t" => "GUILD_MEMBER_LIST_UPDATE", "d" => sync} = NodeClient.payload(driver, "a")

      assert %{
               "id" => "everyone",
               "guild_id" => ^guild_id,
               "ops" => [%{"op" => "SYNC", "range" => [0, 99]}]
             } = sync

      assert_same_list(name, driver, "a", guild_id)

      # Another bot changes its presence (op 3); it sees its own PRESENCE_UPDATE.
      other =
        identify(driver, "b", url(name),
          identify:
            put_in(@identify, ["d", "token"], "other-token") |> put_in(["d", "intents"], 1 + 256)
        )["user"]["id"]

      guild_creates(driver, "b", 1)

      for status <- ["dnd", "invisible", "online", "idle", "invisible"] do
        NodeClient.send_payload(driver, "b", %{
          "op" => 3,
          "d" => %{"status" => status, "since" => nil, "activities" => [], "afk" => false}
        })

        assert %{"t" => "PRESENCE_UPDATE", "d" => %{"user" => %{"id" => ^other}}} =
                 NodeClient.payload(driver, "b")

        assert_same_list(name, driver, "a", guild_id)
      end

      # Members joining and leaving move everything below them.
      guild = Gateway.guild(name, guild_id)
      user = %{"id" => "5", "username" => "aaa-first", "bot" => false}

      :ok =
        Switchboard.Guild.join(guild, Gateway.Payloads.member(Gateway.Demo.member(user), :online))

      assert_same_list(name, driver, "a", guild_id)
      :ok = Switchboard.Guild.leave(guild, other)
      assert_same_list(name, driver, "a", guild_id)
    end

    test "a malformed op 14 is a decode error" do
      bad = &%{"guild_id" => &1, "channels" => %{"1" => [[5, 2]]}}
      assert close_after_ready(14, bad) == 4002
    end
  end

  describe "heartbeats" do
    test "a heartbeat is acknowledged at once" do
      name = start_gateway()
      driver = driver()
      NodeClient.connect(driver, "a", url(name))
      assert %{"event" => "open"} = NodeClient.next(driver, "a")
      assert %{"op" => 10} = NodeClient.payload(driver, "a")
      NodeClient.send_payload(driver, "a", %{"op" => 1, "d" => nil})
      assert NodeClient.payload(driver, "a") == %{"op" => 11}
    end

    test "a server-requested heartbeat is answered by the client and acknowledged" do
      name = start_gateway()
      driver = driver()
      ready = identify(driver, "a", url(name), heartbeat: true)
      guild_creates(driver, "a", 2)
      :ok = Gateway.request_heartbeat(name, ready["session_id"])
      assert NodeClient.payload(driver, "a") == %{"op" => 1, "d" => 3}
      assert NodeClient.payload(driver, "a") == %{"op" => 11}
    end

    test "a heartbeating client stays connected past the interval" do
      # A deadline of 3 s (interval 1 s, grace 3) leaves a loaded machine
      # time to identify; the client then lives through 3.5 intervals.
      name = start_gateway(heartbeat_interval: 1_000, heartbeat_grace: 3)
      driver = driver()
      identify(driver, "a", url(name), heartbeat: true)
      guild_creates(driver, "a", 2)
      Process.sleep(3_500)
      publish_messages(name, first_guild(name), [1])

      event =
        NodeClient.until(
          driver,
          "a",
          &(&1["payload"]["t"] == "MESSAGE_CREATE" or &1["event"] == "close")
        )

      assert event["payload"]["d"]["content"] == "m1"
    end

    test "a zombie is closed with 4009 and its session resumes" do
      name = start_gateway(heartbeat_interval: 2_000)
      driver = driver()
      ready = identify(driver, "a", url(name))
      guild_creates(driver, "a", 2)
      assert close_code(driver, "a") == 4009
      publish_messages(name, first_guild(name), [1])

      NodeClient.connect(driver, "b", ready["resume_gateway_url"] <> "/?v=10&encoding=json")
      assert %{"event" => "open"} = NodeClient.next(driver, "b")
      assert %{"op" => 10} = NodeClient.payload(driver, "b")

      NodeClient.send_payload(driver, "b", %{
        "op" => 6,
        "d" => %{"token" => @token, "session_id" => ready["session_id"], "seq" => 3}
      })

      assert %{"s" => 4, "t" => "MESSAGE_CREATE"} = NodeClient.payload(driver, "b")
      assert %{"s" => 5, "t" => "RESUMED"} = NodeClient.payload(driver, "b")
    end
  end

  describe "back-pressure" do
    test "a client that stops reading has its session ended as a slow consumer, others unaffected" do
      name = start_gateway(guilds: 1, buffer_limit: 1_000_000, send_timeout: 60_000)
      driver = driver()
      reader = identify(driver, "reader", url(name))["session_id"]
      guild_creates(driver, "reader", 1)

      {socket, rest} = RawClient.connect(Gateway.port(name), "/?v=10&encoding=json")
      {1, _hello, _rest} = RawClient.recv_frame(socket, rest)
      RawClient.send_frame(socket, 1, Switchboard.Json.encode!(@identify))
      # It never reads again: the socket's buffers fill, then its
      # connection's queue of frames.
      sessions = fn ->
        Registry.select(Gateway.config(name).registry, [
          {{{:session, :"$1"}, :_, :_}, [], [:"$1"]}
        ])
      end

      wait_for(fn -> length(sessions.()) == 2 end)
      slow_before = Switchboard.Session.slow_disconnects()
      content = String.duplicate("x", 20_000)

      # The reader reads each message before the next is published (so it
      # never falls behind), until the other session is gone.
      Enum.reduce_while(1..5_000, nil, fn n, _ ->
        :ok = Gateway.publish(name, first_guild(name), "MESSAGE_CREATE", %{"content" => content})
        assert NodeClient.payload(driver, "reader")["d"]["content"] == content
        if sessions.() == [reader], do: {:halt, n}, else: {:cont, n}
      end)

      assert sessions.() == [reader]
      assert Switchboard.Session.slow_disconnects() > slow_before
    end
  end

  describe "resume" do
    test "after a dropped connection the client gets exactly the missed dispatches, in order" do
      name = start_gateway()
      driver = driver()
      ready = identify(driver, "a", url(name))
      guild_creates(driver, "a", 2)
      publish_messages(name, first_guild(name), 1..3)
      seen = for _ <- 1..3, do: NodeClient.payload(driver, "a")
      assert List.last(seen)["s"] == 6

      NodeClient.drop(driver, "a")
      assert %{"event" => "close"} = NodeClient.until(driver, "a", &(&1["event"] == "close"))
      publish_messages(name, first_guild(name), 4..8)

      NodeClient.connect(driver, "b", url(name, "v=10&encoding=json&compress=zstd-stream"))
      assert %{"event" => "open"} = NodeClient.next(driver, "b")
      assert %{"op" => 10} = NodeClient.payload(driver, "b")

      NodeClient.send_payload(driver, "b", %{
        "op" => 6,
        "d" => %{"token" => @token, "session_id" => ready["session_id"], "seq" => 6}
      })

      missed = for _ <- 1..5, do: NodeClient.payload(driver, "b")
      assert Enum.map(missed, & &1["s"]) == Enum.to_list(7..11)
      assert Enum.map(missed, & &1["d"]["content"]) == Enum.map(4..8, &"m#{&1}")
      assert %{"t" => "RESUMED", "s" => 12} = NodeClient.payload(driver, "b")

      publish_messages(name, first_guild(name), [9])
      assert %{"s" => 13, "d" => %{"content" => "m9"}} = NodeClient.payload(driver, "b")
    end

    test "RECONNECT is sent, then the client resumes" do
      name = start_gateway()
      driver = driver()
      ready = identify(driver, "a", url(name))
      guild_creates(driver, "a", 2)
      :ok = Gateway.reconnect(name, ready["session_id"])
      assert %{"op" => 7} = NodeClient.payload(driver, "a")
      assert close_code(driver, "a") == 4000

      NodeClient.connect(driver, "b", url(name))
      assert %{"event" => "open"} = NodeClient.next(driver, "b")
      assert %{"op" => 10} = NodeClient.payload(driver, "b")

      NodeClient.send_payload(driver, "b", %{
        "op" => 6,
        "d" => %{"token" => @token, "session_id" => ready["session_id"], "seq" => 3}
      })

      assert %{"t" => "RESUMED", "s" => 4} = NodeClient.payload(driver, "b")
    end

    test "an unknown session gets INVALID_SESSION and may identify on the same connection" do
      name = start_gateway()
      driver = driver()
      NodeClient.connect(driver, "a", url(name))
      assert %{"event" => "open"} = NodeClient.next(driver, "a")
      assert %{"op" => 10} = NodeClient.payload(driver, "a")

      NodeClient.send_payload(driver, "a", %{
        "op" => 6,
        "d" => %{"token" => @token, "session_id" => "nope", "seq" => 1}
      })

      assert NodeClient.payload(driver, "a") == %{"op" => 9, "d" => false}
      NodeClient.send_payload(driver, "a", @identify)
      assert %{"t" => "READY"} = NodeClient.payload(driver, "a")
    end

    test "a session whose missed dispatches left the buffer cannot resume" do
      name = start_gateway(replay_limit: 4)
      driver = driver()
      ready = identify(driver, "a", url(name))
      guild_creates(driver, "a", 2)
      NodeClient.drop(driver, "a")
      assert %{"event" => "close"} = NodeClient.until(driver, "a", &(&1["event"] == "close"))
      publish_messages(name, first_guild(name), 1..5)

      NodeClient.connect(driver, "b", url(name))
      assert %{"event" => "open"} = NodeClient.next(driver, "b")
      assert %{"op" => 10} = NodeClient.payload(driver, "b")

      NodeClient.send_payload(driver, "b", %{
        "op" => 6,
        "d" => %{"token" => @token, "session_id" => ready["session_id"], "seq" => 3}
      })

      assert NodeClient.payload(driver, "b") == %{"op" => 9, "d" => false}
    end
  end

  describe "close codes" do
    setup do
      %{name: start_gateway(max_guilds_per_shard: 1, rate_limit: {10, 60_000}), driver: driver()}
    end

    defp after_hello(%{name: name, driver: driver}, id, query \\ "v=10&encoding=json") do
      NodeClient.connect(driver, id, url(name, query))
      assert %{"event" => "open"} = NodeClient.next(driver, id)
      assert %{"op" => 10} = NodeClient.payload(driver, id)
      driver
    end

    defp closes_with(context, id, payload_or_text, code) do
      driver = after_hello(context, id)

      if is_binary(payload_or_text),
        do: NodeClient.send_text(driver, id, payload_or_text),
        else: NodeClient.send_payload(driver, id, payload_or_text)

      assert close_code(driver, id) == code
    end

    test("4001 unknown opcode", c, do: closes_with(c, "a", %{"op" => 99, "d" => nil}, 4001))
    test("4002 undecodable payload", c, do: closes_with(c, "a", "{not json", 4002))

    test "4002 payload over 4096 bytes", c do
      closes_with(c, "a", ~s({"op":1,"d":null,"x":"#{String.duplicate("x", 4096)}"}), 4002)
    end

    test "a payload of exactly 4096 bytes is accepted", c do
      driver = after_hello(c, "a")
      text = ~s({"op":1,"d":null,"x":"") <> ~s("})
      padding = 4096 - byte_size(text)

      NodeClient.send_text(
        driver,
        "a",
        ~s({"op":1,"d":null,"x":"#{String.duplicate("x", padding)}"})
      )

      assert NodeClient.payload(driver, "a") == %{"op" => 11}
    end

    test("4003 a command before IDENTIFY", c,
      do: closes_with(c, "a", %{"op" => 3, "d" => %{"status" => "online"}}, 4003)
    )

    test("4004 unknown token", c,
      do: closes_with(c, "a", put_in(@identify, ["d", "token"], "wrong"), 4004)
    )

    test "4005 IDENTIFY twice", %{name: name, driver: driver} do
      identify(driver, "a", url(name), identify: put_in(@identify, ["d", "shard"], [0, 2]))
      NodeClient.send_payload(driver, "a", @identify)
      assert close_code(driver, "a") == 4005
    end

    test "4007 RESUME with a sequence ahead of the session", %{name: name, driver: driver} = c do
      ready =
        identify(driver, "a", url(name), identify: put_in(@identify, ["d", "shard"], [0, 2]))

      closes_with(
        c,
        "b",
        %{
          "op" => 6,
          "d" => %{"token" => @token, "session_id" => ready["session_id"], "seq" => 99}
        },
        4007
      )
    end

    test "4008 past the rate limit", c do
      driver = after_hello(c, "a")
      for _ <- 1..11, do: NodeClient.send_payload(driver, "a", %{"op" => 1, "d" => nil})
      acks = for _ <- 1..10, do: NodeClient.payload(driver, "a")
      assert Enum.uniq(acks) == [%{"op" => 11}]
      assert close_code(driver, "a") == 4008
    end

    test("4010 invalid shard", c,
      do: closes_with(c, "a", put_in(@identify, ["d", "shard"], [2, 2]), 4010)
    )

    test("4011 sharding required", c, do: closes_with(c, "a", @identify, 4011))

    test "4012 wrong version", c do
      NodeClient.connect(c.driver, "a", url(c.name, "v=9&encoding=json"))
      assert close_code(c.driver, "a") == 4012
    end

    test("4013 invalid intents", c,
      do: closes_with(c, "a", put_in(@identify, ["d", "intents"], Bitwise.bsl(1, 40)), 4013)
    )

    test "4014 disallowed intents", c do
      identify = %{
        "op" => 2,
        "d" => %{@identify["d"] | "token" => "plain-token", "intents" => 256}
      }

      closes_with(c, "a", identify, 4014)
    end
  end

  describe "compression" do
    for {compress, query} <- [zlib: "compress=zlib-stream", zstd: "compress=zstd-stream"] do
      test "#{compress}-stream is decoded by an independent decoder" do
        name = start_gateway()
        driver = driver()
        identify(driver, "a", url(name, "v=10&encoding=json&" <> unquote(query)))
        guild_creates(driver, "a", 2)
        publish_messages(name, first_guild(name), 1..20)
        got = for _ <- 1..20, do: NodeClient.next(driver, "a")
        assert Enum.map(got, & &1["payload"]["d"]["content"]) == Enum.map(1..20, &"m#{&1}")
        # The shared history makes later messages smaller than their JSON.
        assert List.last(got)["wire"] < 40
      end
    end

    test "zlib-stream frames end with the sync flush suffix" do
      name = start_gateway()

      {socket, rest} =
        RawClient.connect(Gateway.port(name), "/?v=10&encoding=json&compress=zlib-stream")

      {2, hello, _} = RawClient.recv_frame(socket, rest)
      assert binary_part(hello, byte_size(hello) - 4, 4) == <<0, 0, 255, 255>>
      z = :zlib.open()
      :zlib.inflateInit(z)
      assert IO.iodata_to_binary(:zlib.inflate(z, hello)) =~ ~s("op":10)
    end

    test "zstd-stream frames decode with Switchboard.Zstd too" do
      name = start_gateway()

      {socket, rest} =
        RawClient.connect(Gateway.port(name), "/?v=10&encoding=json&compress=zstd-stream")

      {2, hello, _} = RawClient.recv_frame(socket, rest)
      reader = Switchboard.Zstd.decompress_stream()
      assert {:ok, json} = Switchboard.Zstd.decompress(reader, hello)
      assert json =~ ~s("heartbeat_interval")
    end
  end

  describe "ETF" do
    test "IDENTIFY and READY in ETF, string keys out" do
      name = start_gateway()
      {socket, rest} = RawClient.connect(Gateway.port(name), "/?v=10&encoding=etf")
      {2, hello, rest} = RawClient.recv_frame(socket, rest)
      assert {:ok, %{"op" => 10, "d" => %{"heartbeat_interval" => _}}} = Erlpack.decode(hello)
      RawClient.send_frame(socket, 2, Erlpack.encode(@identify))
      {2, ready, rest} = RawClient.recv_frame(socket, rest)

      assert {:ok, %{"op" => 0, "t" => "READY", "s" => 1, "d" => %{"v" => 10}}} =
               Erlpack.decode(ready)

      # The guild prepares ETF frames while an ETF session is attached (and
      # content-less variants while a session lacks MESSAGE_CONTENT).
      {2, _create, rest} = RawClient.recv_frame(socket, rest)
      {2, _create, rest} = RawClient.recv_frame(socket, rest)
      needs = Gateway.config(name).needs[first_guild(name)]
      assert :atomics.get(needs, 1) == 1
      assert :atomics.get(needs, 2) == 0
      publish_messages(name, first_guild(name), [1])
      {2, message, rest} = RawClient.recv_frame(socket, rest)

      assert {:ok, %{"t" => "MESSAGE_CREATE", "s" => 4, "d" => %{"content" => "m1"}}} =
               Erlpack.decode(message)

      # A session that ends is counted out.
      RawClient.send_frame(socket, 8, <<1000::16>>)
      assert {1000, _} = RawClient.await_close(socket, rest)
      wait_for(fn -> :atomics.get(needs, 1) == 0 end)
    end

    test "atom keys are refused with 4002" do
      name = start_gateway()
      {socket, rest} = RawClient.connect(Gateway.port(name), "/?v=10&encoding=etf")
      {2, _hello, rest} = RawClient.recv_frame(socket, rest)
      RawClient.send_frame(socket, 2, :erlang.term_to_binary(%{op: 1, d: nil}))
      assert {4002, _} = RawClient.await_close(socket, rest)
    end
  end

  describe "WebSocket framing" do
    test "an unmasked client frame is closed with 1002" do
      name = start_gateway()
      {socket, rest} = RawClient.connect(Gateway.port(name), "/?v=10&encoding=json")
      RawClient.send_frame(socket, 1, ~s({"op":1,"d":null}), masked: false)
      assert {1002, _} = RawClient.await_close(socket, rest)
    end

    test "a text frame that is not UTF-8 is closed with 1007" do
      name = start_gateway()
      {socket, rest} = RawClient.connect(Gateway.port(name), "/?v=10&encoding=json")
      RawClient.send_frame(socket, 1, <<0xFF, 0xFE>>)
      assert {1007, _} = RawClient.await_close(socket, rest)
    end

    test "ping is answered with pong; fragments are joined" do
      name = start_gateway()
      {socket, rest} = RawClient.connect(Gateway.port(name), "/?v=10&encoding=json")
      {1, _hello, rest} = RawClient.recv_frame(socket, rest)
      RawClient.send_frame(socket, 9, "are you there")
      assert {10, "are you there", rest} = RawClient.recv_frame(socket, rest)
      RawClient.send_frame(socket, 1, ~s({"op":1,), fin: false)
      RawClient.send_frame(socket, 9, "between")
      RawClient.send_frame(socket, 0, ~s("d":null}))
      assert {10, "between", rest} = RawClient.recv_frame(socket, rest)
      assert {1, ~s({"op":11}), _} = RawClient.recv_frame(socket, rest)
    end

    test "a client close is echoed" do
      name = start_gateway()
      {socket, rest} = RawClient.connect(Gateway.port(name), "/?v=10&encoding=json")
      RawClient.send_frame(socket, 8, <<1000::16, "bye">>)
      assert {1000, _} = RawClient.await_close(socket, rest)
    end

    test "a frame header announcing a huge payload is refused before it is read" do
      name = start_gateway()
      {socket, rest} = RawClient.connect(Gateway.port(name), "/?v=10&encoding=json")
      :gen_tcp.send(socket, <<1::1, 0::3, 2::4, 1::1, 127::7, 1_099_511_627_776::64, 1, 2, 3, 4>>)
      assert {4002, _} = RawClient.await_close(socket, rest)
    end

    test "a handshake that does not finish in time is closed" do
      name = start_gateway(handshake_timeout: 100)

      {:ok, socket} =
        :gen_tcp.connect(~c"127.0.0.1", Gateway.port(name), [:binary, active: false])

      :gen_tcp.send(socket, "GET / HTTP/1.1\r\n")
      assert {:error, :closed} = :gen_tcp.recv(socket, 0, 2_000)
    end

    test "a request that is not an upgrade is refused" do
      name = start_gateway()

      {socket, {head, _}} =
        RawClient.open(Gateway.port(name), "/") |> then(fn {s, r} -> {s, r} end)

      assert head =~ "HTTP/1.1 101"
      :gen_tcp.close(socket)

      {:ok, socket} =
        :gen_tcp.connect(~c"127.0.0.1", Gateway.port(name), [:binary, active: false])

      :gen_tcp.send(socket, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
      {:ok, answer} = :gen_tcp.recv(socket, 0, 2_000)
      assert answer =~ "HTTP/1.1 400"
    end
  end

  describe "identify limits" do
    defp try_identify(driver, id, name, shard) do
      NodeClient.connect(driver, id, url(name))
      assert %{"event" => "open"} = NodeClient.next(driver, id)
      assert %{"op" => 10} = NodeClient.payload(driver, id)
      NodeClient.send_payload(driver, id, put_in(@identify, ["d", "shard"], shard))

      case NodeClient.payload(driver, id) do
        %{"t" => "READY"} -> :ready
        %{"op" => 9, "d" => false} -> :invalid_session
      end
    end

    test "one IDENTIFY per max_concurrency bucket per interval; remaining counts down to INVALID_SESSION" do
      name =
        start_gateway(
          identify_limits: true,
          max_concurrency: 4,
          identify_interval: 600_000,
          session_start_limit: 3
        )

      driver = driver()
      auth = [{"Authorization", "Bot #{@token}"}]
      {200, %{"session_start_limit" => limit}} = http(name, "GET", "/api/v10/gateway/bot", auth)
      assert %{"total" => 3, "remaining" => 3, "max_concurrency" => 4} = limit

      # rate_limit_key = shard_id % max_concurrency: shard 4 of 8 is bucket 0 too.
      assert try_identify(driver, "a", name, [0, 4]) == :ready
      assert try_identify(driver, "b", name, [4, 8]) == :invalid_session
      assert try_identify(driver, "c", name, [1, 4]) == :ready
      assert try_identify(driver, "d", name, [2, 4]) == :ready
      {200, %{"session_start_limit" => limit}} = http(name, "GET", "/api/v10/gateway/bot", auth)
      assert %{"remaining" => 0} = limit
      assert limit["reset_after"] > 0
      # Bucket 3 is free, but no start remains.
      assert try_identify(driver, "e", name, [3, 4]) == :invalid_session
      assert Gateway.config(name).identify_limits
    end

    test "not enforced by default: every IDENTIFY goes through, remaining is still counted" do
      name = start_gateway(session_start_limit: 1)
      driver = driver()
      assert try_identify(driver, "a", name, [0, 2]) == :ready
      assert try_identify(driver, "b", name, [0, 2]) == :ready
      auth = [{"Authorization", "Bot #{@token}"}]
      {200, %{"session_start_limit" => limit}} = http(name, "GET", "/api/v10/gateway/bot", auth)
      assert %{"total" => 1, "remaining" => 0, "max_concurrency" => 1} = limit
    end
  end

  describe "metrics" do
    defp counter(snapshot, key), do: Map.get(snapshot.counters, key, 0)

    defp wait_for(fun, tries \\ 200) do
      cond do
        fun.() -> :ok
        tries == 0 -> flunk("condition never held")
        true -> Process.sleep(25) && wait_for(fun, tries - 1)
      end
    end

    # The gauge is Switchboard.RuntimeMetrics': sessions alive, the gateway's included.
    defp sessions_gauge do
      Switchboard.RuntimeMetrics.refresh()
      Switchboard.Metrics.snapshot().gauges[{"switchboard.sessions.connected", []}] || 0
    end

    test "connections, closes by code, bytes and connected sessions reach Switchboard.Metrics" do
      name = start_gateway()
      sessions = sessions_gauge()
      before = Switchboard.Metrics.snapshot()
      driver = driver()
      identify(driver, "a", url(name, "v=10&encoding=json&compress=zstd-stream"))
      guild_creates(driver, "a", 2)
      publish_messages(name, first_guild(name), 1..20)
      for _ <- 1..20, do: NodeClient.payload(driver, "a")

      now = Switchboard.Metrics.snapshot()
      connections = "switchboard.gateway.connections"
      assert counter(now, {connections, []}) - counter(before, {connections, []}) == 1
      raw = counter(now, {"switchboard.gateway.bytes_raw", []})
      compressed = counter(now, {"switchboard.gateway.bytes_compressed", []})
      raw = raw - counter(before, {"switchboard.gateway.bytes_raw", []})
      compressed = compressed - counter(before, {"switchboard.gateway.bytes_compressed", []})
      # HELLO, READY, two GUILD_CREATEs and 20 messages, compressed as a stream.
      assert raw > 2_000 and compressed > 0 and raw > compressed
      assert sessions_gauge() == sessions + 1

      NodeClient.command(driver, %{cmd: "close", id: "a", code: 1000})
      assert close_code(driver, "a") == 1000

      wait_for(fn -> sessions_gauge() == sessions end)

      closes = {"switchboard.gateway.closes", [code: 1000]}
      assert counter(Switchboard.Metrics.snapshot(), closes) - counter(before, closes) == 1
    end
  end

  describe "REST" do
    defp http(name, method, path, headers \\ [], body \\ "") do
      {:ok, socket} =
        :gen_tcp.connect(~c"127.0.0.1", Gateway.port(name), [:binary, active: false])

      head = for {k, v} <- headers, do: "#{k}: #{v}\r\n"

      :gen_tcp.send(socket, [
        "#{method} #{path} HTTP/1.1\r\nHost: x\r\ncontent-length: #{byte_size(body)}\r\n",
        head,
        "\r\n",
        body
      ])

      {:ok, answer} = read_all(socket, "")
      [status_line, rest] = String.split(answer, "\r\n", parts: 2)
      [_, body] = String.split(rest, "\r\n\r\n", parts: 2)
      ["HTTP/1.1", status | _] = String.split(status_line, " ")
      {String.to_integer(status), Switchboard.Json.decode!(body)}
    end

    defp read_all(socket, acc) do
      case :gen_tcp.recv(socket, 0, 5_000) do
        {:ok, data} -> read_all(socket, acc <> data)
        {:error, :closed} -> {:ok, acc}
      end
    end

    test "gateway discovery" do
      name = start_gateway()
      assert http(name, "GET", "/api/v10/gateway") == {200, %{"url" => Gateway.url(name)}}

      assert {200, bot} =
               http(name, "GET", "/api/v10/gateway/bot", [{"Authorization", "Bot #{@token}"}])

      assert bot["url"] == Gateway.url(name)
      assert bot["shards"] == 1
      assert %{"total" => 1000, "max_concurrency" => 1} = bot["session_start_limit"]

      assert {401, %{"message" => "401: Unauthorized"}} =
               http(name, "GET", "/api/v10/gateway/bot")
    end

    test "POST a message: MESSAGE_CREATE to the guild, the message object back" do
      name = start_gateway()
      driver = driver()
      identify(driver, "a", url(name))
      [create | _] = guild_creates(driver, "a", 2)
      channel = hd(create["d"]["channels"])["id"]

      assert {200, message} =
               http(
                 name,
                 "POST",
                 "/api/v10/channels/#{channel}/messages",
                 [{"Authorization", "Bot #{@token}"}, {"Content-Type", "application/json"}],
                 ~s({"content":"hello from REST"})
               )

      assert message["content"] == "hello from REST"
      assert message["channel_id"] == channel
      assert is_binary(message["id"])

      assert %{"t" => "MESSAGE_CREATE", "d" => event} = NodeClient.payload(driver, "a")
      assert event["id"] == message["id"]
      assert event["guild_id"] == create["d"]["id"]
      assert event["content"] == "hello from REST"

      assert {404, %{"code" => 10_003}} =
               http(
                 name,
                 "POST",
                 "/api/v10/channels/1/messages",
                 [{"Authorization", "Bot #{@token}"}],
                 ~s({"content":"x"})
               )

      assert {400, %{"code" => 50_006}} =
               http(
                 name,
                 "POST",
                 "/api/v10/channels/#{channel}/messages",
                 [{"Authorization", "Bot #{@token}"}],
                 ~s({"content":""})
               )
    end
  end
end
