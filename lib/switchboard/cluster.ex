defmodule Switchboard.Cluster do
  @moduledoc """
  Guilds placed over the connected BEAM nodes by a consistent hash ring.

  Every node runs a `Switchboard.Cluster` process. Nodes that run one find
  each other when they connect (Erlang distribution: `Node.connect/1`,
  `:peer`...) and each keeps the same `Switchboard.Cluster.Ring` of them in
  `:persistent_term`, so `owner/1` is a lookup in the caller, with no
  process call.

    * `start_guild/2` starts a guild on its owner (or finds it there);
      `lookup_guild/1` finds it.
    * Each guild started here streams its member changes to its *backup*:
      the node that would own it if its owner left the ring. When a node
      goes down, the backups restart its guilds from those copies, with
      their members; when a node joins, guilds that now belong to it are
      handed over (members read by a worker, the guild restarted there, the
      old one stopped). Sessions attached by guild id re-attach to the new
      guild by themselves (`Switchboard.Session.attach/3`).

  ## Configuration

    * `config :switchboard, ring_replicas: n` - points per node (default 512,
      as ex_hash_ring).
  """

  use GenServer

  alias Switchboard.Cluster.{Ring, Store}
  alias Switchboard.Guild

  @ring_key {__MODULE__, :ring}
  @backup_key {__MODULE__, :backup_ring}

  @doc false
  def start_link(_opts), do: GenServer.start_link(__MODULE__, [], name: __MODULE__)

  @doc "The ring this node places guilds with."
  @spec ring() :: Ring.t()
  def ring, do: :persistent_term.get(@ring_key)

  @doc "The nodes on the ring."
  @spec nodes() :: [node()]
  def nodes, do: ring() |> Ring.nodes() |> Enum.map(&elem(&1, 0)) |> Enum.sort()

  @doc """
  The node that owns `guild_id`: one md5 and a binary search over the ring
  read from `:persistent_term` (no process call, no copy).

      iex> Switchboard.Cluster.owner(1234) == node()
      true
  """
  @spec owner(term()) :: node()
  def owner(guild_id), do: Ring.find_node(:persistent_term.get(@ring_key), guild_id)

  @doc "The node that would own `guild_id` if this node left (`nil` when alone)."
  @spec backup(term()) :: node() | nil
  def backup(guild_id), do: Ring.find_node(:persistent_term.get(@backup_key), guild_id)

  @doc """
  Starts guild `id` on its owner, with `opts` as `Switchboard.Guild.start_link/1`
  (`:members` included); `{:ok, pid}` also when it already runs there.
  """
  @spec start_guild(term(), keyword()) :: {:ok, pid()} | {:error, term()}
  def start_guild(id, opts \\ []) do
    # Under Switchboard.Guard: many callers starting guilds at once wait
    # their turn instead of piling up at the guild supervisor.
    Switchboard.Guard.call(:registry, node(), fn ->
      case owner(id) do
        owner when owner == node() -> start_local(id, opts)
        owner -> :erpc.call(owner, __MODULE__, :start_local, [id, opts])
      end
    end)
  end

  @doc "The pid of guild `id` on its owner, or `nil`."
  @spec lookup_guild(term()) :: pid() | nil
  def lookup_guild(id) do
    case owner(id) do
      owner when owner == node() -> Guild.whereis(id)
      # A local lookup reads the registry's table (no process); a remote
      # one is a call, guarded (Switchboard.Guard) against stampedes.
      owner -> guarded_remote_lookup(owner, id)
    end
  catch
    :error, {:erpc, _} -> nil
  end

  defp guarded_remote_lookup(owner, id) do
    case Switchboard.Guard.call(:registry, node(), fn ->
           :erpc.call(owner, Guild, :whereis, [id], 5_000)
         end) do
      {:error, :busy} -> nil
      pid -> pid
    end
  end

  @doc false
  # Starts the guild here, replicated to its backup.
  def start_local(id, opts) do
    opts = Keyword.put(opts, :on_change, &replicate(id, &1))

    with {:ok, pid} <- Guild.start(id, opts) do
      send_snapshot(id, pid, Keyword.drop(opts, [:members, :on_change]))
      {:ok, pid}
    end
  end

  @doc false
  def replicate(id, change) do
    case backup(id) do
      nil -> :ok
      node -> send({Store, node}, {:change, id, change})
    end
  end

  defp send_snapshot(id, pid, opts) do
    case backup(id) do
      nil -> :ok
      node -> send({Store, node}, {:snapshot, id, opts, Guild.members(pid)})
    end
  end

  # ---------------------------------------------------------------------------
  # Server

  @doc """
  Makes this node's cluster process notice now that distribution was started
  after it (it otherwise checks every #{200} ms); returns the ring's nodes.
  """
  @spec refresh() :: [node()]
  def refresh do
    GenServer.call(__MODULE__, :refresh)
    nodes()
  end

  @impl true
  def init([]) do
    publish([node()])
    {:ok, watch(%{nodes: [node()], name: nil})}
  end

  # Distribution may start after this process (net_kernel started by hand):
  # until it has, look again from time to time; once it has, watch nodes,
  # put this node's name on the ring and greet the connected nodes.
  defp watch(%{name: name} = state) do
    if Node.alive?() and name != node() do
      :net_kernel.monitor_nodes(true)
      nodes = Enum.uniq([node() | List.delete(state.nodes, name) |> List.delete(:nonode@nohost)])
      publish(nodes)
      for other <- Node.list(), do: send({__MODULE__, other}, {:hello, node(), nodes})
      %{state | nodes: nodes, name: node()}
    else
      unless Node.alive?(), do: Process.send_after(self(), :watch, 200)
      state
    end
  end

  @impl true
  def handle_call(:refresh, _from, state), do: {:reply, :ok, watch(state)}

  @impl true
  def handle_info(:watch, state), do: {:noreply, watch(state)}

  def handle_info({:nodeup, node}, state) do
    send({__MODULE__, node}, {:hello, node(), state.nodes})
    {:noreply, state}
  end

  # A node that runs a cluster process joins the ring; the nodes it knows
  # are connected to as well, so every node ends up with the same ring even
  # where Erlang does not mesh the nodes by itself (-connect_all false).
  def handle_info({:hello, node, known}, state) do
    send({__MODULE__, node}, {:welcome, node(), state.nodes})
    {:noreply, state |> add(node) |> meet(known)}
  end

  def handle_info({:welcome, node, known}, state),
    do: {:noreply, state |> add(node) |> meet(known)}

  def handle_info({:nodedown, node}, state) do
    if node in state.nodes do
      nodes = List.delete(state.nodes, node)
      publish(nodes)
      rebalance(:node_down)
      {:noreply, %{state | nodes: nodes}}
    else
      {:noreply, state}
    end
  end

  def handle_info(_other, state), do: {:noreply, state}

  defp add(state, node) do
    if node in state.nodes do
      state
    else
      nodes = [node | state.nodes]
      publish(nodes)
      rebalance(:node_up)
      %{state | nodes: nodes}
    end
  end

  defp meet(state, known) do
    unknown = Enum.reject(known, &(&1 in state.nodes or &1 == node()))
    if unknown != [], do: spawn(fn -> Enum.each(unknown, &Node.connect/1) end)
    state
  end

  defp publish(nodes) do
    replicas = Application.get_env(:switchboard, :ring_replicas, 512)
    ring = Ring.new(Enum.sort(nodes), replicas: replicas)
    :persistent_term.put(@ring_key, ring)
    :persistent_term.put(@backup_key, Ring.remove_node(ring, node()))
  end

  # Runs in a task: hand-overs wait on other nodes, the cluster process does
  # not. Copies are restarted only when a node went down: when one joins,
  # the guilds it takes are handed over live by their owners (a copy here
  # could be older than the guild).
  defp rebalance(change) do
    Task.start(fn ->
      for id <- Guild.local_ids(), pid = Guild.whereis(id), pid != nil do
        move_or_refresh(id, pid)
      end

      for id <- Store.guild_ids(),
          change == :node_down,
          owner(id) == node(),
          Guild.whereis(id) == nil do
        case Store.take(id) do
          {opts, members} ->
            {:ok, _} = start_local(id, Keyword.put(opts, :members, members))
            Store.drop(id)

          nil ->
            :ok
        end
      end
    end)
  end

  defp move_or_refresh(id, pid) do
    case owner(id) do
      owner when owner == node() ->
        opts = :sys.get_state(pid) |> guild_opts()
        send_snapshot(id, pid, opts)

      owner ->
        members = Guild.members(pid)
        opts = :sys.get_state(pid) |> guild_opts()
        {:ok, _} = :erpc.call(owner, __MODULE__, :start_local, [id, [members: members] ++ opts])
        # Not Guild.stop/1: a guild that moved keeps its replica.
        GenServer.stop(pid, {:shutdown, :moved})
    end
  end

  defp guild_opts(state), do: [mode: state.modules.mode, relay_threshold: state.threshold]
end
