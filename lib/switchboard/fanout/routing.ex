defmodule Switchboard.Fanout.Routing do
  @moduledoc false
  # Shared by the native and pure senders: one distribution message per
  # destination node, to the partitioner registered there.

  @doc """
  Groups `pids` by node and sends `{:"$switchboard_fanout", pids, packed, payload}`
  to `partitioner` on each node, without connecting to nodes that are not
  connected. Returns `{messages_sent, nodes_skipped}`.
  """
  @spec route([pid()], atom(), boolean(), term()) :: {non_neg_integer(), non_neg_integer()}
  def route(pids, partitioner, packed, payload) do
    pids
    |> group_by_node(%{})
    |> Enum.reduce({0, 0}, fn {node, node_pids}, {sent, skipped} ->
      message = {:"$switchboard_fanout", node_pids, packed, payload}

      case :erlang.send({partitioner, node}, message, [:noconnect]) do
        :noconnect -> {sent, skipped + 1}
        _ -> {sent + 1, skipped}
      end
    end)
  end

  defp group_by_node([pid | rest], groups) do
    node = node(pid)

    case groups do
      %{^node => pids} -> group_by_node(rest, %{groups | node => [pid | pids]})
      %{} -> group_by_node(rest, Map.put(groups, node, [pid]))
    end
  end

  defp group_by_node([], groups), do: groups

  @max_senders 16

  @doc "Names for a sender pool's processes, as a tuple (used at compile time)."
  @spec sender_names(module()) :: tuple()
  def sender_names(pool) do
    List.to_tuple(for index <- 0..(@max_senders - 1), do: :"#{inspect(pool)}.#{index}")
  end

  @doc """
  How many senders each pool has on this node: one per scheduler (a
  constant for the VM's lifetime), at most #{@max_senders}.
  """
  @spec sender_count() :: pos_integer()
  def sender_count, do: min(:erlang.system_info(:schedulers), @max_senders)

  @doc """
  The sender (from `names`) that serves the calling process: always the
  same one, so one process's remote traffic keeps its order.
  """
  @spec sender_for_caller!(tuple()) :: pid()
  def sender_for_caller!(names) do
    name = elem(names, :erlang.phash2(self(), sender_count()))
    Process.whereis(name) || raise "#{name} is not running (is :switchboard started?)"
  end

  @typedoc "A sender's counters."
  @type counters :: %{
          routed: non_neg_integer(),
          dist_messages: non_neg_integer(),
          nodes_skipped: non_neg_integer()
        }

  @doc "A sender's counters at start."
  @spec new_counters() :: counters()
  def new_counters, do: %{routed: 0, dist_messages: 0, nodes_skipped: 0}

  @doc "Routes like `route/4` and counts it into a sender's `counters`."
  @spec route_counted(counters(), [pid()], atom(), boolean(), term()) :: counters()
  def route_counted(counters, pids, partitioner, packed, payload) do
    {sent, skipped} = route(pids, partitioner, packed, payload)

    %{
      counters
      | routed: counters.routed + 1,
        dist_messages: counters.dist_messages + sent,
        nodes_skipped: counters.nodes_skipped + skipped
    }
  end

  @doc "The counters of a sender pool's running processes (`names`), summed."
  @spec pool_stats(tuple()) :: counters()
  def pool_stats(names) do
    for index <- 0..(sender_count() - 1),
        pid = Process.whereis(elem(names, index)),
        pid != nil,
        reduce: new_counters() do
      acc -> Map.merge(acc, GenServer.call(pid, :stats), fn _key, a, b -> a + b end)
    end
  end
end
