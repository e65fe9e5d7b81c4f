defmodule Mix.Tasks.Switchboard.Server do
  @shortdoc "Runs a Discord Gateway v10 server with demo guilds"
  @moduledoc """
  Starts `Switchboard.Gateway` with demo guilds and waits.

      mix switchboard.server [--port 4000] [--guilds 1] [--members 10]
                             [--token TOKEN ...] [--heartbeat-interval 41250]
                             [--identify-limits] [--max-concurrency 1]

  ## Options

    * `--port` - TCP port (default `4000`; `0` picks a free one).
    * `--guilds` - demo guilds, each with text channels (default `1`).
    * `--members` - demo users per guild (default `10`).
    * `--token` - a bot token to accept, repeatable. With none, one is
      generated and printed. These bots may use every intent, privileged
      ones included.
    * `--heartbeat-interval` - ms sent in HELLO (default `41250`).
    * `--host` - host name put in the URLs handed out (default `127.0.0.1`).
    * `--identify-limits` - enforce Discord's IDENTIFY limits
      (`Switchboard.Gateway.IdentifyLimit`; default: reported only).
    * `--max-concurrency` - `session_start_limit.max_concurrency` (default `1`).

  Prints the WebSocket URL, the REST base and the tokens, then serves until
  interrupted.
  """
  use Mix.Task

  @switches [
    port: :integer,
    guilds: :integer,
    members: :integer,
    token: :keep,
    heartbeat_interval: :integer,
    host: :string,
    identify_limits: :boolean,
    max_concurrency: :integer
  ]

  @impl true
  def run(args) do
    {opts, _rest, invalid} = OptionParser.parse(args, strict: @switches)
    if invalid != [], do: Mix.raise("unknown options: #{inspect(invalid)}")
    Mix.Task.run("app.start")

    tokens = Keyword.get_values(opts, :token)

    {:ok, _} =
      Switchboard.Gateway.start_link(
        port: Keyword.get(opts, :port, 4000),
        guilds: Keyword.get(opts, :guilds, 1),
        members: Keyword.get(opts, :members, 10),
        tokens: tokens,
        heartbeat_interval: Keyword.get(opts, :heartbeat_interval, 41_250),
        host: Keyword.get(opts, :host, "127.0.0.1"),
        identify_limits: Keyword.get(opts, :identify_limits, false),
        max_concurrency: Keyword.get(opts, :max_concurrency, 1)
      )

    config = Switchboard.Gateway.config()
    url = Switchboard.Gateway.url()
    Mix.shell().info("Switchboard gateway listening")
    Mix.shell().info("  gateway: #{url}/?v=10&encoding=json")
    Mix.shell().info("  REST:    http://#{config.host}:#{Switchboard.Gateway.port()}/api/v10")

    for token <- Switchboard.Gateway.tokens() do
      label = if tokens == [], do: " (generated)", else: ""
      Mix.shell().info("  token:   #{token}#{label}")
    end

    for guild <- config.guild_data do
      channels = Enum.map_join(guild["channels"], ", ", &"##{&1["name"]} #{&1["id"]}")
      Mix.shell().info("  guild #{guild["id"]} #{guild["name"]}: #{channels}")
    end

    unless iex_running?(), do: Process.sleep(:infinity)
  end

  defp iex_running?, do: Code.ensure_loaded?(IEx) and IEx.started?()
end
