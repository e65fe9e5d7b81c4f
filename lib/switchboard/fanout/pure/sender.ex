defmodule Switchboard.Fanout.Pure.Sender do
  @moduledoc false
  # The pure twin's sender pool (Manifold's Sender): routes remote parts to
  # Switchboard.Fanout.Pure.Partitioner on each node, and runs whole
  # offloaded fan-outs (local sends included) for its callers.
  use GenServer

  alias Switchboard.Fanout.{Pure, Routing}

  @names Routing.sender_names(__MODULE__)

  def child_spec(index) do
    %{id: {__MODULE__, index}, start: {__MODULE__, :start_link, [index]}}
  end

  def start_link(index), do: GenServer.start_link(__MODULE__, index, name: elem(@names, index))

  @spec for_caller!() :: pid()
  def for_caller!, do: Routing.sender_for_caller!(@names)

  @doc "Counters summed over this node's pure senders."
  def stats, do: Routing.pool_stats(@names)

  @impl true
  def init(_index) do
    Process.flag(:message_queue_data, :off_heap)
    {:ok, Routing.new_counters()}
  end

  @impl true
  def handle_call(:stats, _from, state), do: {:reply, state, state}

  @impl true
  def handle_info({:"$switchboard_fanout_remote", pids, packed, payload}, state) do
    {:noreply, route(state, pids, packed, payload)}
  end

  def handle_info({:"$switchboard_fanout_offload", pids, message, pack, ticket, notify}, state) do
    {delivered, skipped, remote} = Pure.deliver(pids, message)

    state =
      if remote == [] do
        state
      else
        {packed, payload} =
          if pack == :binary,
            do: {true, Switchboard.Fanout.Options.pack(message)},
            else: {false, message}

        route(state, remote, packed, payload)
      end

    :atomics.put(ticket, 1, 1)

    with {pid, ref} <- notify do
      send(pid, {ref, delivered, skipped})
    end

    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  defp route(state, pids, packed, payload),
    do: Routing.route_counted(state, pids, Pure.Partitioner, packed, payload)
end
