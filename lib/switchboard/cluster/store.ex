defmodule Switchboard.Cluster.Store do
  @moduledoc false
  # This node's copies of other nodes' guilds: each guild streams its member
  # changes to the node that would own it if its own node left (its backup,
  # see Switchboard.Cluster), which keeps them here, so the guild can be
  # restarted with its members when that node goes down.

  use GenServer

  @table __MODULE__

  def start_link(_opts), do: GenServer.start_link(__MODULE__, [], name: __MODULE__)

  @doc false
  # The kept members and options of `guild_id`, or nil.
  def take(guild_id) do
    case :ets.lookup(@table, {guild_id, :opts}) do
      [{_, opts}] ->
        members = :ets.select(@table, [{{{guild_id, :member, :_}, :"$1"}, [], [:"$1"]}])
        {opts, members}

      [] ->
        nil
    end
  end

  @doc false
  def guild_ids, do: :ets.select(@table, [{{{:"$1", :opts}, :_}, [], [:"$1"]}])

  @doc false
  def drop(guild_id), do: GenServer.call(__MODULE__, {:drop, guild_id})

  @impl true
  def init([]) do
    :ets.new(@table, [:named_table, :set, :protected, read_concurrency: true])
    {:ok, nil}
  end

  @impl true
  def handle_call({:drop, guild_id}, _from, state) do
    delete_guild(guild_id)
    {:reply, :ok, state}
  end

  @impl true
  def handle_info({:snapshot, guild_id, opts, members}, state) do
    delete_guild(guild_id)
    :ets.insert(@table, {{guild_id, :opts}, opts})
    :ets.insert(@table, for(member <- members, do: {{guild_id, :member, member.id}, member}))
    {:noreply, state}
  end

  def handle_info({:change, guild_id, {:put, member}}, state) do
    :ets.insert(@table, {{guild_id, :member, member.id}, member})
    {:noreply, state}
  end

  def handle_info({:change, guild_id, :stopped}, state) do
    delete_guild(guild_id)
    {:noreply, state}
  end

  def handle_info({:change, guild_id, {:delete, user_id}}, state) do
    :ets.delete(@table, {guild_id, :member, user_id})
    {:noreply, state}
  end

  defp delete_guild(guild_id) do
    :ets.delete(@table, {guild_id, :opts})
    :ets.match_delete(@table, {{guild_id, :member, :_}, :_})
  end
end
