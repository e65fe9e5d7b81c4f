defmodule Switchboard.Gateway do
  @moduledoc """
  A Discord Gateway v10 server over real WebSockets, with the REST routes a
  Discord client library uses to find it and to post messages.

  Clients connect to `ws://HOST:PORT/?v=10&encoding=json|etf` (optionally
  `&compress=zlib-stream|zstd-stream`), receive HELLO, IDENTIFY with a bot
  token, get READY and one GUILD_CREATE per guild, then every dispatch of
  their guilds in order, numbered per session. A dropped client RESUMEs
  within the resume window and receives exactly what it missed. See
  `Switchboard.Gateway.Protocol` for the wire format and close codes.

  The same port answers `GET /api/v10/gateway`, `GET /api/v10/gateway/bot`
  and `POST /api/v10/channels/:id/messages` (`Switchboard.Gateway.Rest`).

  ## Processes

  `start_link/1` starts a supervisor holding registries (sessions, guilds,
  connections), one `Switchboard.Guild` per guild (its members, member
  list, fan-out and replay table: the runtime's guild, with the gateway's
  codec `Switchboard.Gateway.Frames` and payload shapes
  `Switchboard.Gateway.Payloads`), a supervisor of `Switchboard.Session`s,
  a connection supervisor and the listener with its acceptor pool.

  Each accepted socket gets its own `Switchboard.Gateway.Connection`
  process, which owns the socket; an IDENTIFY pairs it with a new
  `Switchboard.Session` whose transport (`Switchboard.Gateway.Transport`)
  hands every numbered frame to the connection to compress, frame and
  write. A dropped connection leaves its session lingering for
  `:resume_timeout`; a RESUME on a new connection rebinds the session to
  it (`Switchboard.Session.resume/3`).

  Add it to the application's supervisor with
  `config :switchboard, :gateway, port: 4000, ...` (the options below), or
  start it yourself: `Switchboard.Gateway.start_link(port: 0)`.

  ## Options

    * `:name` - the instance's name (default `Switchboard.Gateway`).
    * `:port` - TCP port, `0` for any free one (default `4000`).
    * `:ip` - address to listen on (default `{127, 0, 0, 1}`).
    * `:host` - host name in the URLs handed out (default `"127.0.0.1"`).
    * `:tokens` - bot tokens accepted, a list of strings or of
      `{token, privileged?}` (default: one generated token). Privileged
      intents are allowed unless `privileged?` is `false`.
    * `:guilds` - number of demo guilds (default `1`), or a list of guild
      maps; `:members` - demo users per guild (default `10`).
    * `:heartbeat_interval` - ms, sent in HELLO (default `41_250`).
    * `:heartbeat_grace` - a client silent for `interval * grace` is a
      zombie and closed with 4009, its session kept for resuming
      (default `1.5`).
    * `:resume_timeout` - ms a session waits for a RESUME after its
      connection dropped (default `60_000`).
    * `:replay_limit` - dispatches kept per session for RESUME (default `1024`).
    * `:member_request_interval` - ms between two REQUEST_GUILD_MEMBERS
      for every member of a guild, per bot (default `30_000`).
    * `:max_concurrency`, `:session_start_limit`, `:identify_interval`,
      `:identify_limits` - Discord's limits on IDENTIFY (see
      `Switchboard.Gateway.IdentifyLimit`; defaults `1`, `1000`, `5_000`,
      `false`: reported, not enforced).
    * `:buffer_limit` - bytes of a session's frames waiting for its
      connection to write them, past which the session is ended as a slow
      consumer (its connection closed with 4000) (default 4 MiB).
    * `:max_payload` - largest client payload, bytes; larger is 4002
      (default `4096`).
    * `:rate_limit` - `{commands, window_ms}` per connection; past it 4008
      (default `{120, 60_000}`).
    * `:max_guilds_per_shard` - past it IDENTIFY is closed with 4011
      (default `2500`).
    * `:max_connections` - connections held at once (default `100_000`).
    * `:handshake_timeout` - ms to finish the HTTP upgrade (default `5_000`).
    * `:send_timeout` - ms a write to a client may block before the
      connection is dropped (its session kept) (default `15_000`).
    * `:acceptors` - accepting processes (default `4`).
    * `:zstd` - options for `Switchboard.Zstd.compress_stream/1` (Discord's by default).
    * `:zlib` - options for `Switchboard.Gateway.Compressor.Zlib.new/1`.
  """

  use Supervisor

  alias Switchboard.Gateway.{Demo, Frames, Listener, Payloads}

  @type option :: {atom(), term()}

  @doc "Starts a gateway (see the module doc for the options)."
  @spec start_link([option()]) :: Supervisor.on_start()
  def start_link(opts \\ []) do
    name = Keyword.get(opts, :name, __MODULE__)
    Supervisor.start_link(__MODULE__, Keyword.put(opts, :name, name), name: name)
  end

  def child_spec(opts) do
    %{
      id: Keyword.get(opts, :name, __MODULE__),
      start: {__MODULE__, :start_link, [opts]},
      type: :supervisor
    }
  end

  @doc "The instance's configuration."
  @spec config(atom()) :: map()
  def config(name \\ __MODULE__), do: :persistent_term.get({__MODULE__, name})

  @doc "The port the instance listens on."
  @spec port(atom()) :: :inet.port_number()
  def port(name \\ __MODULE__), do: :persistent_term.get({__MODULE__, name, :port})

  @doc "The WebSocket URL clients connect to (`ws://host:port`)."
  @spec url(atom()) :: String.t()
  def url(name \\ __MODULE__), do: "ws://#{config(name).host}:#{port(name)}"

  @doc "The tokens the instance accepts."
  @spec tokens(atom()) :: [String.t()]
  def tokens(name \\ __MODULE__), do: Map.keys(config(name).tokens)

  @doc "The guild process for a guild id, or `nil`."
  @spec guild(atom(), String.t()) :: pid() | nil
  def guild(name \\ __MODULE__, guild_id) do
    case Registry.lookup(config(name).registry, {:guild, guild_id}) do
      [{pid, _}] -> pid
      [] -> nil
    end
  end

  @doc "The `Switchboard.Session` process for a session id, or `nil`."
  @spec session(atom(), String.t()) :: pid() | nil
  def session(name \\ __MODULE__, session_id) do
    case Registry.lookup(config(name).registry, {:session, session_id}) do
      [{pid, _}] -> pid
      [] -> nil
    end
  end

  @doc false
  # A name for a process in the instance's registry.
  def via(config, key, value \\ nil), do: {:via, Registry, {config.registry, key, value}}

  @doc """
  Publishes a dispatch (`type`, `data`) to every session in a guild.
  Returns `{:error, :unknown_guild}` for a guild the instance does not hold.
  """
  @spec publish(atom(), String.t(), String.t(), term()) :: :ok | {:error, :unknown_guild}
  def publish(name \\ __MODULE__, guild_id, type, data) do
    case guild(name, guild_id) do
      nil ->
        {:error, :unknown_guild}

      pid ->
        {:ok, _} = Switchboard.Guild.publish(pid, {type, data})
        :ok
    end
  end

  @doc """
  Asks a session's client for a heartbeat now (op 1); the client must
  answer at once. `:ok`, or `{:error, :unknown_session}`.
  """
  @spec request_heartbeat(atom(), String.t()) :: :ok | {:error, :unknown_session}
  def request_heartbeat(name \\ __MODULE__, session_id),
    do: notify(name, session_id, :request_heartbeat)

  @doc """
  Sends RECONNECT (op 7) to a session's client and closes its connection;
  the session waits for the client to RESUME.
  """
  @spec reconnect(atom(), String.t()) :: :ok | {:error, :unknown_session}
  def reconnect(name \\ __MODULE__, session_id), do: notify(name, session_id, :reconnect)

  defp notify(name, session_id, message) do
    case Registry.lookup(config(name).connection_registry, session_id) do
      [] -> {:error, :unknown_session}
      connections -> Enum.each(connections, fn {pid, _} -> send(pid, message) end)
    end
  end

  @impl true
  def init(opts) do
    name = Keyword.fetch!(opts, :name)
    config = build_config(name, opts)
    # Owned by the supervisor: member requests and identifies per bot.
    :ets.new(config.limits, [:public, :named_table, :set, write_concurrency: true])
    :persistent_term.put({__MODULE__, name}, config)

    guilds =
      for data <- config.guild_data do
        members = Map.get(config.members, data["id"], data["members"] || [])

        {Switchboard.Guild,
         id: data["id"],
         name: via(config, {:guild, data["id"]}),
         register: false,
         members: Enum.with_index(members, &Payloads.member(&1, Demo.status(&2))),
         codec: Frames,
         codec_options: Map.fetch!(config.needs, data["id"]),
         payloads: Payloads}
      end

    partitions = System.schedulers_online()

    children =
      [
        {Registry, keys: :unique, name: config.registry, partitions: partitions},
        {Registry, keys: :duplicate, name: config.connection_registry, partitions: partitions}
      ] ++
        guilds ++
        [
          {DynamicSupervisor, name: config.sessions, strategy: :one_for_one},
          {DynamicSupervisor,
           name: config.connections, strategy: :one_for_one, max_children: config.max_connections},
          {Listener, config}
        ]

    Supervisor.init(children, strategy: :rest_for_one)
  end

  defp build_config(name, opts) do
    tokens =
      case Keyword.get(opts, :tokens, []) do
        [] -> [Demo.generate_token()]
        list -> list
      end

    tokens =
      for {entry, index} <- Enum.with_index(tokens), into: %{} do
        {token, privileged} =
          case entry do
            {token, privileged} when is_binary(token) and is_boolean(privileged) -> entry
            token when is_binary(token) -> {token, true}
          end

        {token, %{user: Demo.bot_user(index), privileged: privileged}}
      end

    bots = tokens |> Map.values() |> Enum.map(& &1.user) |> Enum.sort_by(& &1["id"])

    member_count = Keyword.get(opts, :members, 10)

    guild_data =
      case Keyword.get(opts, :guilds, 1) do
        count when is_integer(count) -> Demo.guilds(count, member_count, bots)
        list when is_list(list) -> list
      end

    # Demo guilds share one member list; a guild given as data lists its own.
    demo_members = Demo.members(member_count, bots)

    members =
      if is_integer(Keyword.get(opts, :guilds, 1)),
        do: Map.new(guild_data, &{&1["id"], demo_members}),
        else: %{}

    channels =
      for guild <- guild_data, channel <- guild["channels"], into: %{} do
        {channel["id"], guild["id"]}
      end

    %{
      name: name,
      registry: Module.concat(name, Registry),
      connection_registry: Module.concat(name, ConnectionRegistry),
      limits: Module.concat(name, Limits),
      identify_limits: Keyword.get(opts, :identify_limits, false),
      identify_interval: Keyword.get(opts, :identify_interval, 5_000),
      max_concurrency: Keyword.get(opts, :max_concurrency, 1),
      session_start_limit: Keyword.get(opts, :session_start_limit, 1000),
      member_request_interval: Keyword.get(opts, :member_request_interval, 30_000),
      sessions: Module.concat(name, Sessions),
      connections: Module.concat(name, Connections),
      port: Keyword.get(opts, :port, 4000),
      ip: Keyword.get(opts, :ip, {127, 0, 0, 1}),
      host: Keyword.get(opts, :host, "127.0.0.1"),
      tokens: tokens,
      guild_ids: Enum.map(guild_data, & &1["id"]),
      guild_data: guild_data,
      # GUILD_CREATE, prepared once per guild for both encodings.
      creates: Map.new(guild_data, &{&1["id"], Frames.prepare("GUILD_CREATE", &1)}),
      needs: Map.new(guild_data, &{&1["id"], Frames.needs()}),
      members: members,
      channels: channels,
      heartbeat_interval: Keyword.get(opts, :heartbeat_interval, 41_250),
      heartbeat_grace: Keyword.get(opts, :heartbeat_grace, 1.5),
      resume_timeout: Keyword.get(opts, :resume_timeout, 60_000),
      replay_limit: Keyword.get(opts, :replay_limit, 1024),
      buffer_limit: Keyword.get(opts, :buffer_limit, 4 * 1024 * 1024),
      max_payload: Keyword.get(opts, :max_payload, 4096),
      rate_limit: Keyword.get(opts, :rate_limit, {120, 60_000}),
      max_guilds_per_shard: Keyword.get(opts, :max_guilds_per_shard, 2500),
      max_connections: Keyword.get(opts, :max_connections, 100_000),
      handshake_timeout: Keyword.get(opts, :handshake_timeout, 5_000),
      send_timeout: Keyword.get(opts, :send_timeout, 15_000),
      acceptors: Keyword.get(opts, :acceptors, 4),
      zstd: Keyword.get(opts, :zstd, []),
      zlib: Keyword.get(opts, :zlib, [])
    }
  end
end
