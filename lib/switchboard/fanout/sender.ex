defmodule Switchboard.Fanout.Sender do
  @moduledoc false
  # Routes the remote part of fan-outs: receives
  # {:"$switchboard_fanout_remote", pids, packed, payload} from callers (inline)
  # and from sender threads (offload), groups the pids by node and sends one
  # message per node to Switchboard.Fanout.Partitioner there. A pool of them
  # runs on every node; each caller always uses the same one.
  use GenServer

  alias Switchboard.Fanout.Routing

  @names Routing.sender_names(__MODULE__)

  def child_spec(index) do
    %{id: {__MODULE__, index}, start: {__MODULE__, :start_link, [index]}}
  end

  def start_link(index) do
    GenServer.start_link(__MODULE__, index, name: elem(@names, index))
  end

  @doc "The sender serving the calling process."
  @spec for_caller!() :: pid()
  def for_caller!, do: Routing.sender_for_caller!(@names)

  @doc "Counters summed over this node's senders."
  def stats, do: Routing.pool_stats(@names)

  @impl true
  def init(_index) do
    # Large pid lists arrive here; keep them off the heap until handled.
    Process.flag(:message_queue_data, :off_heap)
    {:ok, Routing.new_counters()}
  end

  @impl true
  def handle_info({:"$switchboard_fanout_remote", pids, packed, payload}, state) do
    {:noreply,
     Routing.route_counted(state, pids, Switchboard.Fanout.Partitioner, packed, payload)}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def handle_call(:stats, _from, state), do: {:reply, state, state}
end
