defmodule Switchboard.Gateway.Guild do
  @moduledoc """
  A guild as the gateway sees it: one process holding the guild's data (for
  GUILD_CREATE) and its connected sessions, publishing each event to all of
  them.

  An event's data is encoded once per encoding in use among the guild's
  sessions (`Switchboard.Gateway.Codec.fragment/1`) and delivered with
  `Switchboard.Fanout` to a native receiver group, so a publish costs the
  guild one encoding and no per-session work in Elixir. Each session gets
  `{:"$gateway_dispatch", type, fragments}` with the fragments shared.

  This is the gateway's seam to the runtime: when `Switchboard.Guild` lands
  it takes this module's place (join/leave/publish).
  """

  use GenServer

  alias Switchboard.Fanout
  alias Switchboard.Gateway.Codec

  @type guild :: pid()

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: Keyword.get(opts, :name))

  def child_spec(opts),
    do: %{
      id: {__MODULE__, Keyword.fetch!(opts, :data)["id"]},
      start: {__MODULE__, :start_link, [opts]}
    }

  @doc """
  Adds a session (a pid receiving dispatches in `encoding`) and returns the
  guild's GUILD_CREATE data encoded for it.
  """
  @spec join(guild(), pid(), :json | :etf) :: {:ok, Codec.fragment()}
  def join(guild, session, encoding), do: GenServer.call(guild, {:join, session, encoding})

  @doc "Removes a session."
  @spec leave(guild(), pid()) :: :ok
  def leave(guild, session), do: GenServer.cast(guild, {:leave, session})

  @doc """
  Publishes a dispatch to every session of the guild; returns once each has
  it in its mailbox.
  """
  @spec publish(guild(), String.t(), term()) :: :ok
  def publish(guild, type, data), do: GenServer.call(guild, {:publish, type, data}, 30_000)

  @doc "The guild's data."
  @spec data(guild()) :: map()
  def data(guild), do: GenServer.call(guild, :data)

  @doc "Every member of the guild."
  @spec members(guild()) :: [map()]
  def members(guild), do: GenServer.call(guild, :members)

  @doc "The number of sessions connected."
  @spec session_count(guild()) :: non_neg_integer()
  def session_count(guild), do: GenServer.call(guild, :session_count)

  @impl true
  def init(opts) do
    data = Keyword.fetch!(opts, :data)

    if registry = Keyword.get(opts, :registry),
      do: {:ok, _} = Registry.register(registry, {:guild, data["id"]}, nil)

    {:ok,
     %{
       data: data,
       members: Keyword.get(opts, :members, data["members"] || []),
       group: Fanout.Group.new(),
       sessions: %{},
       encodings: %{},
       create: %{}
     }}
  end

  @impl true
  def handle_call({:join, session, encoding}, _from, state) do
    state =
      if Map.has_key?(state.sessions, session) do
        state
      else
        ref = Process.monitor(session)
        Fanout.Group.add(state.group, session)

        %{
          state
          | sessions: Map.put(state.sessions, session, {encoding, ref}),
            encodings: Map.update(state.encodings, encoding, 1, &(&1 + 1))
        }
      end

    {fragment, state} = guild_create(state, encoding)
    {:reply, {:ok, fragment}, state}
  end

  def handle_call({:publish, type, data}, _from, state) do
    fragments =
      for {encoding, count} <- state.encodings, count > 0, into: %{} do
        {encoding, Codec.for_encoding(encoding).fragment(data)}
      end

    if fragments != %{},
      do: Fanout.send(state.group, {:"$gateway_dispatch", type, fragments})

    {:reply, :ok, state}
  end

  def handle_call(:data, _from, state), do: {:reply, state.data, state}
  def handle_call(:members, _from, state), do: {:reply, state.members, state}
  def handle_call(:session_count, _from, state), do: {:reply, map_size(state.sessions), state}

  @impl true
  def handle_cast({:leave, session}, state), do: {:noreply, drop(state, session)}

  @impl true
  def handle_info({:DOWN, _ref, :process, session, _reason}, state),
    do: {:noreply, drop(state, session)}

  defp drop(state, session) do
    case Map.pop(state.sessions, session) do
      {nil, _} ->
        state

      {{encoding, ref}, sessions} ->
        Process.demonitor(ref, [:flush])
        Fanout.Group.remove(state.group, session)

        %{
          state
          | sessions: sessions,
            encodings: Map.update!(state.encodings, encoding, &(&1 - 1))
        }
    end
  end

  defp guild_create(%{create: create} = state, encoding) do
    case create do
      %{^encoding => fragment} ->
        {fragment, state}

      _ ->
        fragment = Codec.for_encoding(encoding).fragment(state.data)
        {fragment, %{state | create: Map.put(create, encoding, fragment)}}
    end
  end
end
