defmodule Switchboard.Gateway.Payloads do
  @moduledoc """
  Discord's shapes of what a `Switchboard.Guild` publishes about its
  members (its `:payloads` module): member events and
  GUILD_MEMBER_LIST_UPDATE.

  The gateway's members are `Switchboard.Guild` members whose `:data` is
  the Discord guild member object (`"user"`, `"nick"`, `"roles"`...):
  `member/2` makes one.
  """

  @doc """
  A `Switchboard.Guild` member for a Discord member object, with a status.

      iex> member = Switchboard.Gateway.Payloads.member(%{"user" => %{"id" => "7", "username" => "ann"}}, :idle)
      iex> Map.take(member, [:id, :name, :status, :hoist])
      %{id: "7", name: "ann", status: :idle, hoist: nil}
  """
  @spec member(map(), :online | :idle | :dnd | :offline) :: map()
  def member(%{"user" => %{"id" => id} = user} = data, status),
    do: %{id: id, name: user["username"] || id, status: status, hoist: nil, data: data}

  @doc "The data of GUILD_MEMBER_ADD/UPDATE/REMOVE and PRESENCE_UPDATE for a member."
  @spec member_event(String.t(), map(), String.t()) :: map()
  def member_event("PRESENCE_UPDATE", member, guild_id), do: presence(member, guild_id)

  def member_event("GUILD_MEMBER_REMOVE", member, guild_id),
    do: %{"guild_id" => guild_id, "user" => member.data["user"]}

  def member_event(_type, member, guild_id), do: Map.put(member.data, "guild_id", guild_id)

  @doc "A member's presence (PRESENCE_UPDATE's data)."
  @spec presence(map(), String.t() | nil) :: map()
  def presence(member, guild_id) do
    status = Atom.to_string(member.status)

    presence = %{
      "user" => %{"id" => member.id},
      "status" => status,
      "activities" => Map.get(member, :activities, []),
      "client_status" => if(member.status == :offline, do: %{}, else: %{"web" => status})
    }

    if guild_id, do: Map.put(presence, "guild_id", guild_id), else: presence
  end

  @doc """
  GUILD_MEMBER_LIST_UPDATE's data for `Switchboard.MemberList` ops: the
  list `"everyone"`, its counts and groups, and the ops with Discord's
  names, each member item the member object with its presence.
  """
  @spec member_list_update(String.t(), [tuple()], map(), :ets.tid()) :: map()
  def member_list_update(guild_id, ops, counts, table) do
    %{
      "guild_id" => guild_id,
      "id" => "everyone",
      "member_count" => counts.member_count,
      "online_count" => counts.online_count,
      "groups" => for({id, count} <- counts.groups, do: %{"id" => id, "count" => count}),
      "ops" => Enum.map(ops, &op(&1, table))
    }
  end

  defp op({:sync, range, items}, table),
    do: %{"op" => "SYNC", "range" => range, "items" => Enum.map(items, &item(&1, table))}

  defp op({:insert, index, item}, table),
    do: %{"op" => "INSERT", "index" => index, "item" => item(item, table)}

  defp op({:update, index, item}, table),
    do: %{"op" => "UPDATE", "index" => index, "item" => item(item, table)}

  defp op({:delete, index}, _table), do: %{"op" => "DELETE", "index" => index}
  defp op({:invalidate, range}, _table), do: %{"op" => "INVALIDATE", "range" => range}

  defp item({:group, id, count}, _table), do: %{"group" => %{"id" => id, "count" => count}}

  defp item({:member, user_id}, table) do
    [{_, member}] = :ets.lookup(table, user_id)
    %{"member" => Map.put(member.data, "presence", presence(member, nil))}
  end
end
