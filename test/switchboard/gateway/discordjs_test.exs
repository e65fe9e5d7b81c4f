defmodule Switchboard.Gateway.DiscordJsTest do
  # An unmodified client library written for Discord, not by us: discord.js
  # v14 (npm, pinned in test/js/package-lock.json) runs a bot against the
  # gateway. It finds the gateway through REST (`GET /gateway/bot`),
  # identifies, builds its guild and channel caches from READY and
  # GUILD_CREATE, fetches every member (op 8), sends a message over REST and
  # receives it as MESSAGE_CREATE, and after a server RECONNECT resumes its
  # session and keeps receiving.
  use ExUnit.Case, async: false

  alias Switchboard.Gateway

  @bot Path.expand("../../js/discordjs_bot.js", __DIR__)
  @token "discordjs.test-token"

  @tag timeout: 120_000
  test "a discord.js bot connects, sees its guild, fetches members, sends and receives, and resumes" do
    name = :"gateway_djs_#{System.unique_integer([:positive])}"

    start_supervised!(
      {Gateway, name: name, port: 0, tokens: [@token], guilds: 1, members: 20},
      id: name
    )

    api = "http://127.0.0.1:#{Gateway.port(name)}/api"
    node = System.find_executable("node") || raise "node not found"

    port =
      Port.open({:spawn_executable, node}, [
        :binary,
        :exit_status,
        {:line, 1_000_000},
        args: [@bot, api, @token]
      ])

    on_exit(fn -> if Port.info(port), do: Port.close(port) end)

    ready = next(port, "ready")
    assert ready["guilds"] == 1
    assert ready["guild"] =~ "Demo guild"
    assert ready["channels"] >= 1
    # 20 demo users and the bot itself, in chunks the library put together.
    assert next(port, "members")["count"] == 21

    sent = next(port, "sent")
    assert sent["content"] == "hello from discord.js"
    message = next(port, "message")
    assert message["id"] == sent["id"]
    assert message["content"] == "hello from discord.js"
    assert message["author"] == ready["user"]

    # RECONNECT (op 7): the library reconnects and RESUMEs the same session.
    [session_id] = session_ids(name)
    :ok = Gateway.reconnect(name, session_id)
    assert %{"event" => "resumed"} = next(port, "resumed")
    assert session_ids(name) == [session_id]

    Port.command(port, "send\n")
    sent = next(port, "sent")
    assert next(port, "message")["id"] == sent["id"]
    Port.command(port, "quit\n")
  end

  defp session_ids(name) do
    Registry.select(Gateway.config(name).connection_registry, [{{:"$1", :_, :_}, [], [:"$1"]}])
    |> Enum.uniq()
  end

  # The next line of the bot's output whose event is `event` (others, such
  # as "reconnecting", are skipped); an "error" line fails the test.
  defp next(port, event) do
    receive do
      {^port, {:data, {:eol, line}}} ->
        case Switchboard.Json.decode(line) do
          {:ok, %{"event" => ^event} = data} -> data
          {:ok, %{"event" => "error"} = data} -> flunk("discord.js error: #{inspect(data)}")
          _ -> next(port, event)
        end

      {^port, {:exit_status, status}} ->
        flunk("discord.js bot exited with #{status}")
    after
      30_000 -> flunk("no #{event} from the discord.js bot within 30 s")
    end
  end
end
