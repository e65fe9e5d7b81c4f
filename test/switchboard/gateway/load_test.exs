defmodule Switchboard.Gateway.LoadTest do
  # 1,000 real WebSocket clients (npm's ws, one Node process) in one guild,
  # each receiving every message in order.
  use ExUnit.Case, async: false

  alias Switchboard.Gateway

  @clients 1_000
  @messages 30
  @load Path.expand("../../js/load.js", __DIR__)

  @tag timeout: 120_000
  test "1,000 concurrent clients each receive every message, in order" do
    start_supervised!(
      {Gateway, name: :load_gateway, port: 0, tokens: ["load"], guilds: 1, members: 5}
    )

    guild_id = hd(Gateway.config(:load_gateway).guild_ids)

    port =
      Port.open({:spawn_executable, System.find_executable("node")}, [
        :binary,
        {:line, 65_536},
        args: [
          @load,
          Gateway.url(:load_gateway),
          "load",
          "#{@clients}",
          "#{@messages}",
          "1",
          "none"
        ]
      ])

    assert_receive {^port, {:data, {:eol, "READY 1000"}}}, 60_000

    assert Switchboard.Guild.stats(Gateway.guild(:load_gateway, guild_id)).sessions == @clients

    for n <- 0..(@messages - 1) do
      content = "n:#{n}:#{System.os_time(:microsecond)}"
      :ok = Gateway.publish(:load_gateway, guild_id, "MESSAGE_CREATE", %{"content" => content})
    end

    assert_receive {^port, {:data, {:eol, line}}}, 60_000
    result = Switchboard.Json.decode!(line)
    assert result["received"] == @clients * @messages
    assert result["out_of_order"] == 0
    assert result["closed_early"] == 0
  end
end
