defmodule Switchboard.Gateway.Connection do
  @moduledoc """
  One client: the process that owns its socket and hosts its session.

  Phases: `:http` (reading the request; a WebSocket upgrade or a REST call,
  within `:handshake_timeout`), `:hello` (HELLO sent, waiting for IDENTIFY
  or RESUME), `:ready` (identified: dispatches flow) and `:parked` (the
  socket is gone; the session keeps numbering and buffering dispatches for
  `:resume_timeout`, waiting for a RESUME).

  A RESUME arriving on another connection is checked against this session
  (`{:resume_check, ...}`); when it can be served, the new connection hands
  its socket over (`{:adopt, ...}`) and this process goes on with it,
  replaying what the client missed, in order, then RESUMED. So a session is
  always one process, and nothing published during the hand-over is lost.

  Client input is decoded close to the socket: frames by
  `Switchboard.Gateway.WebSocket` (bounded), payloads by the encoding's
  codec as plain data (at most `:max_payload` bytes), commands checked by
  `Switchboard.Gateway.Protocol`; every violation is answered with the
  protocol's close code. Writes block at most `:send_timeout`, after which
  the connection is dropped and its session parked (the back-pressure
  policy for a client that does not read).
  """

  use GenServer, restart: :temporary

  require Logger

  alias Switchboard.Gateway.{Codec, Compressor, Guild, Protocol, Rest, Session, WebSocket}

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
       guilds: [],
       rate: {0, 0},
       heartbeat_timer: nil,
       resume_timer: nil,
       adopting: false
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

  def handle_info({:"$gateway_dispatch", type, fragments}, state) when state.session != nil do
    dispatch_batch([{type, fragments}], state)
  end

  def handle_info({:"$gateway_dispatch", _type, _fragments}, state), do: {:noreply, state}

  def handle_info({:resume_timeout, ref}, %{phase: :parked, resume_timer: ref} = state),
    do: {:stop, :normal, state}

  def handle_info({:resume_timeout, _ref}, state), do: {:noreply, state}

  def handle_info({:adopt, socket, transport, ws, last_seq}, state) do
    adopt(state, socket, transport, ws, last_seq)
  end

  def handle_info(:request_heartbeat, %{socket: socket, session: session} = state)
      when socket != nil do
    noreply(send_payload(state, Protocol.heartbeat_request(session && session.seq)))
  end

  def handle_info(:reconnect, %{socket: socket, phase: :ready} = state) when socket != nil do
    # RECONNECT, then the socket is closed; the session waits for a RESUME.
    send_payload(state, Protocol.reconnect())
    close(state, 4000, "Reconnect.")
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def handle_call({:resume_check, token, encoding, last_seq}, _from, state) do
    session = state.session

    cond do
      session == nil or session.token != token ->
        {:reply, {:error, :invalid_session}, state}

      session.encoding != encoding ->
        {:reply, {:error, :invalid_session}, state}

      true ->
        case Session.replay(session, last_seq) do
          {:ok, _} ->
            # Drop the old socket now: from here on this session waits for
            # the new one.
            {:reply, :ok, %{park_state(state) | adopting: true}}

          {:error, reason} ->
            {:reply, {:error, reason}, state}
        end
    end
  end

  def handle_call(:info, _from, state) do
    info = %{
      phase: state.phase,
      seq: state.session && state.session.seq,
      session_id: state.session && state.session.id,
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
    :gen_tcp.send(state.socket, WebSocket.close_frame(code || 1000, ""))
    :gen_tcp.close(state.socket)

    if code in [1000, 1001] or state.phase != :ready,
      do: {:stop, :normal, state},
      else: park(state)
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
      current != window -> {:ok, %{state | rate: {current, 1}}}
      count < limit -> {:ok, %{state | rate: {window, count + 1}}}
      true -> {:error, :rate_limited}
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
    data = %{
      "user" => %{"id" => state.session.user["id"]},
      "status" => Map.get(presence, "status", "online"),
      "activities" => Map.get(presence, "activities", []),
      "client_status" => %{"web" => Map.get(presence, "status", "online")}
    }

    for {guild_id, pid} <- state.guilds,
        do: Guild.publish(pid, "PRESENCE_UPDATE", Map.put(data, "guild_id", guild_id))

    {:ok, state}
  end

  defp command({:request_guild_members, request}, state) do
    case List.keyfind(state.guilds, request["guild_id"], 0) do
      nil ->
        {:ok, state}

      {guild_id, pid} ->
        members = Guild.members(pid)
        query = Map.get(request, "query", "")
        limit = Map.get(request, "limit", 0)
        ids = Map.get(request, "user_ids")

        found =
          members
          |> Enum.filter(fn member ->
            if is_list(ids),
              do: member["user"]["id"] in ids,
              else: String.starts_with?(member["user"]["username"], query)
          end)
          |> then(&if is_integer(limit) and limit > 0, do: Enum.take(&1, limit), else: &1)

        chunk = %{
          "guild_id" => guild_id,
          "members" => found,
          "chunk_index" => 0,
          "chunk_count" => 1,
          "nonce" => Map.get(request, "nonce")
        }

        dispatch_now(state, "GUILD_MEMBERS_CHUNK", chunk)
    end
  end

  defp command({:other, _op, _d}, state), do: {:ok, state}

  defp identify(state, identify) do
    config = state.config

    with {:ok, bot} <- authenticate(config, identify.token),
         :ok <- intents_allowed(bot, identify.intents),
         guild_ids = Enum.filter(config.guild_ids, &Protocol.in_shard?(&1, identify.shard)),
         :ok <- shard_size(config, guild_ids) do
      session =
        Session.new(
          user: bot.user,
          token: strip_bot(identify.token),
          encoding: state.encoding,
          shard: identify.shard,
          intents: identify.intents,
          guild_ids: guild_ids,
          replay_limit: config.replay_limit
        )

      {:ok, _} = Registry.register(config.registry, {:session, session.id}, nil)

      guilds =
        for guild_id <- guild_ids,
            pid = Switchboard.Gateway.guild(config.name, guild_id),
            pid != nil,
            do: {guild_id, pid, Guild.join(pid, self(), state.encoding)}

      state = %{
        state
        | session: session,
          phase: :ready,
          guilds: for({id, pid, _} <- guilds, do: {id, pid})
      }

      ready =
        Protocol.ready(
          session.user,
          guild_ids,
          session.id,
          Switchboard.Gateway.url(config.name),
          identify.shard
        )

      {:ok, state} = dispatch_now(state, "READY", ready)

      Enum.reduce_while(guilds, {:ok, state}, fn {_id, _pid, {:ok, fragment}}, {:ok, state} ->
        case dispatch_fragment(state, "GUILD_CREATE", fragment) do
          {:ok, state} -> {:cont, {:ok, state}}
          other -> {:halt, other}
        end
      end)
    end
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

    with pid when is_pid(pid) <- Switchboard.Gateway.session(config.name, resume.session_id),
         :ok <- resume_check(pid, strip_bot(resume.token), state.encoding, resume.seq) do
      # The session takes the socket over; this process is done.
      :inet.setopts(state.socket, active: false)

      case :gen_tcp.controlling_process(state.socket, pid) do
        :ok ->
          # The client's decoder is mid-stream: the session keeps this
          # connection's compression stream.
          if state.compressor, do: state.compressor.handover(state.compressor_state, pid)

          transport = %{
            encoding: state.encoding,
            compressor: {state.compressor, state.compressor_state}
          }

          send(pid, {:adopt, state.socket, transport, state.ws, resume.seq})

          {:stop, :normal, %{state | socket: nil}}

        {:error, _} ->
          send_payload(state, Protocol.invalid_session(false))
      end
    else
      {:error, :invalid_seq} -> {:error, :invalid_seq}
      _ -> send_payload(state, Protocol.invalid_session(false))
    end
  end

  defp resume_check(pid, token, encoding, seq) do
    GenServer.call(pid, {:resume_check, token, encoding, seq}, 5_000)
  catch
    :exit, _ -> {:error, :invalid_session}
  end

  defp adopt(state, socket, transport, ws, last_seq) do
    {compressor, compressor_state} = transport.compressor

    state = %{
      detach(state)
      | socket: socket,
        ws: ws,
        adopting: false,
        resume_timer: nil,
        codec: Codec.for_encoding(transport.encoding),
        encoding: transport.encoding,
        compressor: compressor,
        compressor_state: compressor_state
    }

    state = arm_heartbeat(%{state | phase: :ready})

    case Session.replay(state.session, last_seq) do
      {:ok, entries} ->
        frames =
          for {seq, type, fragment} <- entries,
              do: frame(state, state.codec.dispatch(seq, type, fragment))

        with {:ok, state} <- write(state, frames),
             {:ok, state} <- dispatch_now(state, "RESUMED", Protocol.resumed()) do
          :inet.setopts(socket, active: :once)
          {:noreply, state}
        else
          other -> other
        end

      {:error, :invalid_seq} ->
        close(state, :invalid_seq)

      {:error, :gone} ->
        send_payload(state, Protocol.invalid_session(false))
        :gen_tcp.close(socket)
        {:stop, :normal, state}
    end
  end

  # ---------------------------------------------------------------------------
  # Dispatches

  defp dispatch_batch(batch, state) do
    batch = collect(batch, @batch)
    session = state.session

    {frames, session} =
      Enum.reduce(Enum.reverse(batch), {[], session}, fn {type, fragments}, {frames, session} ->
        fragment = Map.get(fragments, session.encoding)

        if fragment != nil and wanted?(session, type) do
          {seq, session} = Session.push(session, type, fragment)

          if state.socket && !state.adopting,
            do: {[frame(state, state.codec.dispatch(seq, type, fragment)) | frames], session},
            else: {frames, session}
        else
          {frames, session}
        end
      end)
      |> then(fn {frames, session} -> {Enum.reverse(frames), session} end)

    state = %{state | session: session}

    cond do
      state.socket == nil or state.adopting -> {:noreply, state}
      frames == [] -> {:noreply, state}
      true -> noreply(write(state, frames))
    end
  end

  # Takes up to `left` more dispatches already waiting in the mailbox, so a
  # burst is written to the socket with one send.
  defp collect(batch, 0), do: batch

  defp collect(batch, left) do
    receive do
      {:"$gateway_dispatch", type, fragments} -> collect([{type, fragments} | batch], left - 1)
    after
      0 -> batch
    end
  end

  defp wanted?(session, type) do
    case Protocol.required_intent(type) do
      nil -> true
      bit -> Bitwise.band(session.intents, bit) != 0
    end
  end

  defp dispatch_now(state, type, data),
    do: dispatch_fragment(state, type, state.codec.fragment(data))

  defp dispatch_fragment(state, type, fragment) do
    {seq, session} = Session.push(state.session, type, fragment)
    state = %{state | session: session}
    write(state, frame(state, state.codec.dispatch(seq, type, fragment)))
  end

  # ---------------------------------------------------------------------------
  # Writing

  defp send_payload(state, payload), do: write(state, frame(state, state.codec.encode(payload)))

  defp frame(%{compressor: nil, codec: codec}, payload),
    do: WebSocket.frame(codec.frame_type(), payload)

  defp frame(%{compressor: compressor, compressor_state: z}, payload),
    do: WebSocket.frame(:binary, compressor.compress(z, payload))

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
    :gen_tcp.send(state.socket, WebSocket.close_frame(code, text))
    :gen_tcp.close(state.socket)

    if state.phase == :ready and Protocol.reconnectable?(code) and code != 4007,
      do: park(%{state | socket: nil}),
      else: {:stop, :normal, state}
  end

  defp socket_lost(%{phase: :ready} = state) do
    if state.socket, do: :gen_tcp.close(state.socket)
    park(%{state | socket: nil})
  end

  defp socket_lost(state), do: {:stop, :normal, state}

  defp park(state), do: {:noreply, park_state(state)}

  defp park_state(state) do
    state = detach(state)
    ref = make_ref()
    Process.send_after(self(), {:resume_timeout, ref}, state.config.resume_timeout)
    %{state | phase: :parked, resume_timer: ref}
  end

  # Forget the current socket and its compressor (the session stays).
  defp detach(state) do
    if state.socket, do: :gen_tcp.close(state.socket)
    if state.compressor, do: state.compressor.close(state.compressor_state)

    %{
      state
      | socket: nil,
        compressor: nil,
        compressor_state: nil,
        heartbeat_timer: nil,
        phase: if(state.session, do: :parked, else: state.phase)
    }
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
