defmodule Switchboard.Gateway.Connection do
  @moduledoc """
  One client: the process that owns its socket, paired with its
  `Switchboard.Session`.

  Phases: `:http` (reading the request; a WebSocket upgrade or a REST call,
  within `:handshake_timeout`), `:hello` (HELLO sent, waiting for IDENTIFY
  or RESUME) and `:ready` (paired with a session: dispatches flow).

  IDENTIFY starts a `Switchboard.Session` (under the gateway's session
  supervisor, registered by its session id) whose transport
  (`Switchboard.Gateway.Transport`) sends this process every frame the
  session numbered: READY, then per guild GUILD_CREATE right as the
  session attaches to the `Switchboard.Guild`, then the guilds' events.
  This process compresses, frames and writes them, a burst with one send.
  The session's `:select` function (`Switchboard.Gateway.Frames.select/5`)
  applies the intents and picks the encoding before numbering.

  When the connection ends without ending the session (a dropped socket,
  a zombie closed with 4009, RECONNECT, any reconnectable close code) the
  session lingers for `:resume_timeout`; a RESUME on another connection
  rebinds it there (`Switchboard.Session.resume/3`: the missed frames, in
  order, then RESUMED, then live events). So a session is always one
  process and nothing published meanwhile is lost.

  Client input is decoded close to the socket: frames by
  `Switchboard.Gateway.WebSocket` (bounded), payloads by the encoding's
  codec as plain data (at most `:max_payload` bytes), commands checked by
  `Switchboard.Gateway.Protocol`; every violation is answered with the
  protocol's close code. Writes block at most `:send_timeout`, after which
  the connection is dropped (its session lingers); a session whose frames
  wait unwritten past its buffer limit is ended (slow consumer).
  """

  use GenServer, restart: :temporary

  require Logger

  alias Switchboard.Gateway.{Codec, Compressor, Frames, IdentifyLimit, Protocol, Rest, Transport}
  alias Switchboard.Gateway.WebSocket
  alias Switchboard.MemberList.Behaviour, as: MemberListContract
  alias Switchboard.Metrics

  @max_headers 64
  @max_line 8192
  @max_body 65_536
  @batch 64

  def start_link(config), do: GenServer.start_link(__MODULE__, config)

  @impl true
  def init(config) do
    timer = Process.send_after(self(), :handshake_timeout, config.handshake_timeout)

    {:ok,
     %{
       config: config,
       phase: :http,
       socket: nil,
       timer: timer,
       request: nil,
       headers: %{},
       header_count: 0,
       ws: nil,
       codec: nil,
       encoding: nil,
       compressor: nil,
       compressor_state: nil,
       session: nil,
       session_id: nil,
       user: nil,
       intents: 0,
       guilds: [],
       counter: :atomics.new(1, signed: true),
       last_seq: nil,
       rate: {0, 0},
       heartbeat_timer: nil
     }}
  end

  # ---------------------------------------------------------------------------
  # HTTP

  @impl true
  def handle_info({:socket, socket}, state) do
    :ok =
      :inet.setopts(socket,
        packet: :http_bin,
        packet_size: @max_line,
        active: :once,
        send_timeout: state.config.send_timeout,
        send_timeout_close: true
      )

    {:noreply, %{state | socket: socket}}
  end

  def handle_info({:http, socket, {:http_request, method, {:abs_path, path}, {1, 1}}}, state)
      when state.phase == :http and state.request == nil do
    :inet.setopts(socket, active: :once)
    {:noreply, %{state | request: {method, path}}}
  end

  def handle_info({:http, socket, {:http_header, _, name, _, value}}, state)
      when state.phase == :http and state.request != nil and state.header_count < @max_headers do
    :inet.setopts(socket, active: :once)

    name =
      if is_atom(name),
        do: name |> Atom.to_string() |> String.downcase(),
        else: String.downcase(name)

    {:noreply,
     %{state | headers: Map.put(state.headers, name, value), header_count: state.header_count + 1}}
  end

  def handle_info({:http, socket, :http_eoh}, state)
      when state.phase == :http and state.request != nil do
    :inet.setopts(socket, packet: :raw)
    route(state)
  end

  def handle_info({:http, socket, _other}, state) when state.phase == :http do
    http_error(socket, 400, "Bad Request")
    {:stop, :normal, state}
  end

  def handle_info(:handshake_timeout, %{phase: :http} = state) do
    if state.socket, do: :gen_tcp.close(state.socket)
    {:stop, :normal, state}
  end

  def handle_info(:handshake_timeout, state), do: {:noreply, state}

  # ---------------------------------------------------------------------------
  # WebSocket

  def handle_info({:tcp, socket, data}, %{socket: socket} = state) do
    case WebSocket.parse(state.ws, data) do
      {:ok, events, ws} ->
        state = %{state | ws: ws}

        case handle_events(events, state) do
          {:ok, state} ->
            :inet.setopts(socket, active: :once)
            {:noreply, state}

          other ->
            other
        end

      {:error, {reason, code}, events, ws} ->
        state = %{state | ws: ws}

        case handle_events(events, state) do
          {:ok, state} ->
            code = if reason == :too_big, do: elem(Protocol.close(:decode_error), 0), else: code
            close(state, code, Atom.to_string(reason))

          other ->
            other
        end
    end
  end

  def handle_info({closed, socket}, %{socket: socket} = state)
      when closed in [:tcp_closed, :tcp_error] do
    socket_lost(state)
  end

  def handle_info({:tcp_error, socket, _reason}, %{socket: socket} = state),
    do: socket_lost(state)

  def handle_info({:tcp, _old, _data}, state), do: {:noreply, state}

  def handle_info({closed, _old}, state) when closed in [:tcp_closed, :tcp_error],
    do: {:noreply, state}

  def handle_info({:heartbeat_timeout, ref}, %{heartbeat_timer: ref} = state)
      when state.phase in [:hello, :ready] do
    # A zombie: no heartbeat in time. The session stays for a RESUME.
    close(state, :session_timed_out)
  end

  def handle_info({:heartbeat_timeout, _ref}, state), do: {:noreply, state}

  def handle_info({:"$gw_frame", frame, size, seq}, state),
    do: write_frames([{frame, size, seq}], state)

  def handle_info({:"$gw_close", :resumed}, state) do
    # The session went on with another connection.
    close(%{state | session: nil}, 4000, "Resumed elsewhere.")
  end

  def handle_info({:"$gw_close", _reason}, %{session: nil} = state), do: {:noreply, state}

  def handle_info({:"$gw_close", _reason}, state) do
    # The session ended (e.g. its client fell too far behind).
    close(%{state | session: nil}, 4000, "Session ended.")
  end

  def handle_info(:request_heartbeat, %{socket: socket} = state) when socket != nil do
    noreply(send_payload(state, Protocol.heartbeat_request(state.last_seq)))
  end

  def handle_info(:reconnect, %{socket: socket, phase: :ready} = state) when socket != nil do
    # RECONNECT, then the socket is closed; the session waits for a RESUME.
    send_payload(state, Protocol.reconnect())
    close(state, 4000, "Reconnect.")
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def handle_call(:info, _from, state) do
    info = %{
      phase: state.phase,
      seq: state.last_seq,
      session_id: state.session_id,
      compressor_memory: state.compressor && state.compressor.memory(state.compressor_state)
    }

    {:reply, info, state}
  end

  # ---------------------------------------------------------------------------
  # Routing the HTTP request

  defp route(%{request: {method, path}} = state) do
    {path_only, query} =
      case String.split(path, "?", parts: 2) do
        [p, q] -> {p, q}
        [p] -> {p, ""}
      end

    cond do
      websocket_request?(state.headers) ->
        upgrade(state, query)

      String.starts_with?(path_only, "/api/") ->
        rest(state, method, path_only)

      true ->
        http_error(state.socket, 404, "Not Found")
        {:stop, :normal, state}
    end
  end

  defp websocket_request?(headers),
    do: String.downcase(Map.get(headers, "upgrade", "")) == "websocket"

  defp upgrade(%{request: {:GET, _}} = state, query) do
    case WebSocket.handshake(state.headers) do
      {:ok, answer} ->
        Process.cancel_timer(state.timer)
        :gen_tcp.send(state.socket, answer)
        Metrics.increment("switchboard.gateway.connections")
        max = state.config.max_payload

        state = %{
          state
          | ws: WebSocket.new(max_frame_size: max, max_message_size: max),
            headers: %{}
        }

        case Protocol.parse_query(query) do
          {:ok, query} ->
            state = start_transport(state, query)
            send_payload(state, Protocol.hello(state.config.heartbeat_interval))
            :inet.setopts(state.socket, active: :once)
            {:noreply, arm_heartbeat(%{state | phase: :hello})}

          {:error, reason} ->
            # The upgrade is done (a WebSocket close can be sent) but the
            # connection cannot speak this version or encoding.
            state = start_transport(state, %{encoding: :json, compress: nil})
            close(%{state | phase: :hello}, reason)
        end

      {:error, :bad_handshake} ->
        http_error(state.socket, 400, "Bad Request")
        {:stop, :normal, state}
    end
  end

  defp upgrade(state, _query) do
    http_error(state.socket, 405, "Method Not Allowed")
    {:stop, :normal, state}
  end

  defp rest(state, method, path) do
    Process.cancel_timer(state.timer)

    with {:ok, length} <- content_length(state.headers),
         {:ok, body} <- read_body(state.socket, length) do
      {status, body} = Rest.handle(state.config, method, path, state.headers, body)
      Rest.respond(state.socket, status, body)
    else
      {:error, status} -> http_error(state.socket, status, "Bad Request")
    end

    :gen_tcp.close(state.socket)
    {:stop, :normal, state}
  end

  defp content_length(headers) do
    case Integer.parse(Map.get(headers, "content-length", "0")) do
      {n, ""} when n >= 0 and n <= @max_body -> {:ok, n}
      {n, ""} when n > @max_body -> {:error, 413}
      _ -> {:error, 400}
    end
  end

  defp read_body(_socket, 0), do: {:ok, ""}

  defp read_body(socket, length) do
    case :gen_tcp.recv(socket, length, 5_000) do
      {:ok, body} -> {:ok, body}
      {:error, _} -> {:error, 400}
    end
  end

  defp http_error(socket, status, text) do
    :gen_tcp.send(socket, [
      "HTTP/1.1 #{status} #{text}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ])

    :gen_tcp.close(socket)
  end

  defp start_transport(state, query) do
    compressor = Compressor.for_compression(query.compress)

    compressor_state =
      case query.compress do
        nil -> nil
        :zstd_stream -> compressor.new(state.config.zstd)
        :zlib_stream -> compressor.new(state.config.zlib)
      end

    %{
      state
      | codec: Codec.for_encoding(query.encoding),
        encoding: query.encoding,
        compressor: compressor,
        compressor_state: compressor_state
    }
  end

  # ---------------------------------------------------------------------------
  # WebSocket events

  defp handle_events([], state), do: {:ok, state}

  defp handle_events([event | rest], state) do
    case handle_event(event, state) do
      {:ok, state} -> handle_events(rest, state)
      other -> other
    end
  end

  defp handle_event({:ping, payload}, state) do
    write(state, WebSocket.frame(:pong, payload))
  end

  defp handle_event({:pong, _}, state), do: {:ok, state}

  defp handle_event({:close, code, _reason}, state) do
    # Echo the close; 1000 and 1001 from the client end its session too.
    Metrics.increment("switchboard.gateway.closes", 1, code: code || 1005)
    :gen_tcp.send(state.socket, WebSocket.close_frame(code || 1000, ""))
    :gen_tcp.close(state.socket)
    if code in [1000, 1001], do: stop_session(state)
    {:stop, :normal, %{state | socket: nil}}
  end

  defp handle_event({_type, payload}, state) do
    with {:ok, state} <- rate(state),
         {:ok, term} <- decode(state, payload),
         {:ok, command} <- Protocol.parse_command(term) do
      case command(command, state) do
        {:error, reason} -> close(state, reason)
        other -> other
      end
    else
      {:error, reason} when is_atom(reason) -> close(state, reason)
      {:error, _} -> close(state, :decode_error)
    end
  end

  defp rate(%{rate: {window, count}, config: %{rate_limit: {limit, window_ms}}} = state) do
    now = System.monotonic_time(:millisecond)
    current = div(now, window_ms)

    cond do
      current != window ->
        {:ok, %{state | rate: {current, 1}}}

      count < limit ->
        {:ok, %{state | rate: {window, count + 1}}}

      true ->
        Metrics.increment("switchboard.gateway.rate_limited")
        {:error, :rate_limited}
    end
  end

  defp decode(state, payload) do
    case state.codec.decode(payload) do
      {:ok, term} -> {:ok, term}
      {:error, _} -> {:error, :decode_error}
    end
  end

  # ---------------------------------------------------------------------------
  # Commands

  defp command({:heartbeat, _seq}, state) do
    state = arm_heartbeat(state)
    send_payload(state, Protocol.heartbeat_ack())
  end

  defp command({:identify, identify}, %{phase: :hello} = state), do: identify(state, identify)
  defp command({:resume, resume}, %{phase: :hello} = state), do: resume(state, resume)

  defp command({kind, _}, %{phase: :ready}) when kind in [:identify, :resume],
    do: {:error, :already_authenticated}

  defp command(_command, %{phase: :hello}), do: {:error, :not_authenticated}

  defp command({:presence_update, presence}, state) do
    with {:ok, status} <- Protocol.presence_status(Map.get(presence, "status", "online")) do
      for {_guild_id, pid} <- state.guilds,
          do: Switchboard.Guild.update_presence(pid, state.user["id"], status)
    end

    {:ok, state}
  end

  defp command({:member_list_subscribe, %{guild_id: guild_id, ranges: ranges}}, state) do
    MemberListContract.ranges!(ranges)
    Switchboard.Session.subscribe(state.session, guild_id, ranges)
    {:ok, state}
  rescue
    ArgumentError -> {:error, :decode_error}
  end

  defp command({:request_guild_members, request}, state) do
    Switchboard.Gateway.Members.request(state, request)
  end

  defp command({:other, _op, _d}, state), do: {:ok, state}

  defp identify(state, identify) do
    config = state.config

    with {:ok, bot} <- authenticate(config, identify.token),
         :ok <- intents_allowed(bot, identify.intents),
         guild_ids = Enum.filter(config.guild_ids, &Protocol.in_shard?(&1, identify.shard)),
         :ok <- shard_size(config, guild_ids),
         :ok <- IdentifyLimit.identify(config, strip_bot(identify.token), identify.shard) do
      session_id = Base.encode16(:crypto.strong_rand_bytes(16), case: :lower)

      guilds =
        for id <- guild_ids, pid = Switchboard.Gateway.guild(config.name, id), do: {id, pid}

      # What a RESUME checks and needs, with the session's name.
      about = %{
        token: strip_bot(identify.token),
        encoding: state.encoding,
        user: bot.user,
        intents: identify.intents,
        guilds: guilds,
        # What the session needs its guilds to prepare (see Frames.need/3).
        needs:
          {for({id, _} <- guilds, do: Map.fetch!(config.needs, id)),
           {state.encoding, identify.intents}}
      }

      {guild_needs, kind} = about.needs
      Frames.need(guild_needs, kind, 1)

      {:ok, session} =
        DynamicSupervisor.start_child(
          config.sessions,
          {Switchboard.Session,
           id: session_id,
           name: Switchboard.Gateway.via(config, {:session, session_id}, about),
           transport: {Transport, conn: self(), counter: state.counter, needs: about.needs},
           replay_limit: config.replay_limit,
           buffer_limit: config.buffer_limit,
           select: Frames.selector(state.encoding, identify.intents, bot.user["id"]),
           owner: self(),
           linger: config.resume_timeout}
        )

      state = paired(state, session, session_id, about)
      url = Switchboard.Gateway.url(config.name)
      ready = Protocol.ready(bot.user, guild_ids, session_id, url, identify.shard)
      dispatch(state, "READY", ready)

      # GUILD_CREATE is numbered as the session joins the guild, before any
      # of the guild's events.
      for {guild_id, pid} <- guilds do
        create = {"GUILD_CREATE", Frames, Map.fetch!(config.creates, guild_id)}
        Switchboard.Session.attach(session, pid, greeting: create)
      end

      {:ok, state}
    else
      # Discord's answer to an IDENTIFY over the limits: identify again later.
      {:error, :rate_limited} -> send_payload(state, Protocol.invalid_session(false))
      {:error, _} = error -> error
    end
  end

  defp paired(state, session, session_id, about) do
    {:ok, _} = Registry.register(state.config.connection_registry, session_id, nil)

    %{
      state
      | phase: :ready,
        session: session,
        session_id: session_id,
        user: about.user,
        intents: about.intents,
        guilds: about.guilds
    }
  end

  @doc false
  # A dispatch from no guild (READY, a member chunk...), numbered by the session.
  def dispatch(state, type, data) do
    prepared = Frames.prepare_for(type, data, state.encoding)
    Switchboard.Session.dispatch(state.session, type, Frames, prepared)
  end

  defp authenticate(config, token) do
    case Map.fetch(config.tokens, strip_bot(token)) do
      {:ok, bot} -> {:ok, bot}
      :error -> {:error, :authentication_failed}
    end
  end

  defp strip_bot("Bot " <> token), do: token
  defp strip_bot(token), do: token

  defp intents_allowed(bot, intents) do
    import Bitwise

    if bot.privileged or (intents &&& Protocol.privileged_intents()) == 0,
      do: :ok,
      else: {:error, :disallowed_intents}
  end

  defp shard_size(config, guild_ids) do
    if length(guild_ids) > config.max_guilds_per_shard,
      do: {:error, :sharding_required},
      else: :ok
  end

  defp resume(state, resume) do
    config = state.config
    token = strip_bot(resume.token)
    encoding = state.encoding

    with [{session, %{token: ^token, encoding: ^encoding} = about}] <-
           Registry.lookup(config.registry, {:session, resume.session_id}),
         resumed = Frames.prepare_for("RESUMED", Protocol.resumed(), encoding),
         {:ok, _replayed} <-
           resume_session(session, resume.seq,
             transport: {Transport, conn: self(), counter: state.counter, needs: about.needs},
             owner: self(),
             greeting: {"RESUMED", Frames, resumed}
           ) do
      {:ok, paired(state, session, resume.session_id, about)}
    else
      {:error, :invalid_seq} -> {:error, :invalid_seq}
      _ -> send_payload(state, Protocol.invalid_session(false))
    end
  end

  defp resume_session(session, seq, opts) do
    Switchboard.Session.resume(session, seq, opts)
  catch
    :exit, _ -> {:error, :gone}
  end

  defp stop_session(%{session: nil}), do: :ok
  # Stopped (not killed) so that its transport counts it out of its guilds' needs.
  defp stop_session(%{session: session}) do
    GenServer.stop(session, :normal, 5_000)
  catch
    :exit, _ -> :ok
  end

  # ---------------------------------------------------------------------------
  # Writing

  defp write_frames(batch, state) do
    batch = collect(batch, @batch)

    [{_, _, seq} | _] = batch

    # Compressed in the order they are written: one stream per connection.
    {frames, size} =
      batch
      |> Enum.reverse()
      |> Enum.map_reduce(0, fn {frame, size, _seq}, total ->
        {frame(state, frame), total + size}
      end)

    :atomics.sub(state.counter, 1, size)
    noreply(write(%{state | last_seq: seq}, frames))
  end

  # Takes up to `left` more frames already waiting in the mailbox, so a
  # burst is written to the socket with one send. Newest first.
  defp collect(batch, 0), do: batch

  defp collect(batch, left) do
    receive do
      {:"$gw_frame", frame, size, seq} -> collect([{frame, size, seq} | batch], left - 1)
    after
      0 -> batch
    end
  end

  defp send_payload(state, payload), do: write(state, frame(state, state.codec.encode(payload)))

  # Counted in switchboard.gateway.bytes_raw and .bytes_compressed (the
  # same for an uncompressed connection, so raw / compressed is the ratio).
  defp frame(%{compressor: nil, codec: codec}, payload) do
    size = IO.iodata_length(payload)
    Metrics.increment("switchboard.gateway.bytes_raw", size)
    Metrics.increment("switchboard.gateway.bytes_compressed", size)
    WebSocket.frame(codec.frame_type(), payload)
  end

  defp frame(%{compressor: compressor, compressor_state: z}, payload) do
    compressed = compressor.compress(z, payload)
    Metrics.increment("switchboard.gateway.bytes_raw", IO.iodata_length(payload))
    Metrics.increment("switchboard.gateway.bytes_compressed", IO.iodata_length(compressed))
    WebSocket.frame(:binary, compressed)
  end

  defp write(%{socket: nil} = state, _iodata), do: {:ok, state}

  defp write(state, iodata) do
    case :gen_tcp.send(state.socket, iodata) do
      :ok -> {:ok, state}
      {:error, _} -> socket_lost(state)
    end
  end

  defp noreply({:ok, state}), do: {:noreply, state}
  defp noreply(other), do: other

  defp close(state, reason) when is_atom(reason) do
    {code, text} = Protocol.close(reason)
    close(state, code, text)
  end

  defp close(state, code, text) do
    Metrics.increment("switchboard.gateway.closes", 1, code: code)

    if state.socket do
      :gen_tcp.send(state.socket, WebSocket.close_frame(code, text))
      :gen_tcp.close(state.socket)
    end

    # A reconnectable close leaves the session lingering for a RESUME.
    unless Protocol.reconnectable?(code) and code != 4007, do: stop_session(state)
    {:stop, :normal, %{state | socket: nil}}
  end

  # The session (if any) lingers for a RESUME.
  defp socket_lost(state) do
    # 1006: closed with no close frame.
    if state.phase != :http, do: Metrics.increment("switchboard.gateway.closes", 1, code: 1006)
    if state.socket, do: :gen_tcp.close(state.socket)
    {:stop, :normal, %{state | socket: nil}}
  end

  defp arm_heartbeat(state) do
    # The timer is known by a reference in its message, so a timeout that
    # fired before this heartbeat was read is recognised as stale.
    ref = make_ref()
    timeout = round(state.config.heartbeat_interval * state.config.heartbeat_grace)
    Process.send_after(self(), {:heartbeat_timeout, ref}, timeout)
    %{state | heartbeat_timer: ref}
  end
end
