defmodule Switchboard.Gateway.Members do
  @moduledoc """
  REQUEST_GUILD_MEMBERS (op 8), answered with GUILD_MEMBERS_CHUNK dispatches.

  A request names a guild of the session and either `user_ids` (at most
  100) or a `query` (a username prefix, case-insensitive) with a `limit`
  (`0`: no limit). The guild's members are read from its ETS table by a
  worker (`Switchboard.Guild.scan/3`), never by the guild process nor by
  the connection, and sent in chunks of at most #{1_000} members, each
  with `chunk_index`, `chunk_count` and the request's `nonce`
  (`not_found` lists requested ids that are not members; `presences`
  when asked for).

  Asking for every member (`query` `""`, no `user_ids`) needs the
  privileged GUILD_MEMBERS intent (else the connection is closed with
  4014, Disallowed intent(s)) and is rate limited per bot and guild: one
  per `:member_request_interval` ms (default 30 s). A request over the
  limit is answered with Discord's RATE_LIMITED dispatch
  (`{"opcode": 8, "retry_after": seconds, "meta": {"guild_id", "nonce"}}`)
  and counted in `switchboard.gateway.rate_limited`.
  """

  import Bitwise

  alias Switchboard.Gateway.{Connection, Protocol}

  @chunk 1_000
  @max_user_ids 100

  @doc false
  # Called by the connection for an op 8 of its session.
  def request(state, request) do
    guild_id = request["guild_id"]
    query = Map.get(request, "query")
    user_ids = Map.get(request, "user_ids")
    limit = Map.get(request, "limit", 0)
    nonce = Map.get(request, "nonce")

    with {:ok, pid} <- guild(state, guild_id),
         {:ok, filter} <- filter(query, user_ids, limit),
         :ok <- allowed(state, guild_id, filter, nonce) do
      presences = Map.get(request, "presences") == true
      session = %{state | socket: nil}

      Task.start(fn ->
        send_chunks(session, pid, guild_id, filter, limit, nonce, presences)
      end)

      {:ok, state}
    else
      :ignore -> {:ok, state}
      {:error, _} = error -> error
    end
  end

  defp guild(state, guild_id) do
    case List.keyfind(state.guilds, guild_id, 0) do
      {_, pid} -> {:ok, pid}
      nil -> :ignore
    end
  end

  defp filter(_query, ids, _limit) when is_list(ids) do
    ids = Enum.map(ids, &to_string_id/1)

    if length(ids) <= @max_user_ids and Enum.all?(ids, &is_binary/1),
      do: {:ok, {:ids, ids}},
      else: {:error, :decode_error}
  end

  defp filter(query, nil, limit) when is_binary(query) and is_integer(limit),
    do: filter_query(query, limit)

  defp filter(_query, ids, _limit) when is_binary(ids), do: filter(nil, [ids], 0)
  defp filter(_query, _ids, _limit), do: {:error, :decode_error}

  defp filter_query(query, limit) when limit >= 0 do
    if query == "", do: {:ok, :all}, else: {:ok, {:prefix, String.downcase(query)}}
  end

  defp filter_query(_query, _limit), do: {:error, :decode_error}

  defp to_string_id(id) when is_integer(id), do: Integer.to_string(id)
  defp to_string_id(id), do: id

  defp allowed(state, guild_id, :all, nonce) do
    if (state.intents &&& Protocol.intent(:guild_members)) == 0 do
      {:error, :disallowed_intents}
    else
      rate_limit(state, guild_id, nonce)
    end
  end

  defp allowed(_state, _guild_id, _filter, _nonce), do: :ok

  defp rate_limit(state, guild_id, nonce) do
    config = state.config
    now = System.monotonic_time(:millisecond)
    key = {:members, state.user["id"], guild_id}
    interval = config.member_request_interval

    case :ets.lookup(config.limits, key) do
      [{_, last}] when now - last < interval ->
        Switchboard.Metrics.increment("switchboard.gateway.rate_limited")

        Connection.dispatch(state, "RATE_LIMITED", %{
          "opcode" => 8,
          "retry_after" => (interval - (now - last)) / 1000,
          "meta" => %{"guild_id" => guild_id, "nonce" => nonce}
        })

        :ignore

      _ ->
        :ets.insert(config.limits, {key, now})
        :ok
    end
  end

  defp send_chunks(state, pid, guild_id, filter, limit, nonce, presences) do
    found = scan(pid, filter)

    found =
      case filter do
        {:ids, _} -> found
        _ when limit > 0 -> Enum.take(found, limit)
        _ -> found
      end

    chunks = Enum.chunk_every(found, @chunk)
    count = max(length(chunks), 1)

    not_found =
      case filter do
        {:ids, ids} -> ids -- Enum.map(found, & &1.id)
        _ -> nil
      end

    chunks
    |> then(&if &1 == [], do: [[]], else: &1)
    |> Enum.with_index()
    |> Enum.each(fn {members, index} ->
      chunk = %{
        "guild_id" => guild_id,
        "members" => Enum.map(members, & &1.data),
        "chunk_index" => index,
        "chunk_count" => count,
        "nonce" => nonce
      }

      chunk = if not_found && index == 0, do: Map.put(chunk, "not_found", not_found), else: chunk

      chunk =
        if presences,
          do: Map.put(chunk, "presences", Enum.map(members, &presence/1)),
          else: chunk

      Connection.dispatch(state, "GUILD_MEMBERS_CHUNK", chunk)
    end)
  catch
    # The session or the guild went away meanwhile.
    :exit, _ -> :ok
  end

  defp presence(member), do: Switchboard.Gateway.Payloads.presence(member, nil)

  defp scan(pid, :all), do: Switchboard.Guild.members(pid)

  defp scan(pid, {:ids, ids}) do
    wanted = MapSet.new(ids)

    Switchboard.Guild.scan(
      pid,
      fn {id, member}, acc -> if MapSet.member?(wanted, id), do: [member | acc], else: acc end,
      []
    )
  end

  defp scan(pid, {:prefix, prefix}) do
    Switchboard.Guild.scan(
      pid,
      fn {_id, member}, acc ->
        if String.starts_with?(String.downcase(member.name), prefix),
          do: [member | acc],
          else: acc
      end,
      []
    )
  end
end
