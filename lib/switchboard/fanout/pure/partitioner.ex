defmodule Switchboard.Fanout.Pure.Partitioner do
  @moduledoc false
  # The pure twin's partitioner (Manifold's): one per node, registered under
  # this name. It splits each incoming fan-out's pids over worker processes
  # by :erlang.phash2(pid, workers), so a receiver is always served by the
  # same worker and keeps its order; the workers decode and send.
  use GenServer

  alias Switchboard.Fanout.Pure

  def start_link(_opts), do: GenServer.start_link(__MODULE__, [], name: __MODULE__)

  @doc "Fan-out messages received on `node` (default: this node)."
  def stats(node \\ node()), do: GenServer.call({__MODULE__, node}, :stats)

  @impl true
  def init([]) do
    Process.flag(:trap_exit, true)
    Process.flag(:message_queue_data, :off_heap)
    workers = for _ <- 1..System.schedulers_online(), do: start_worker()
    {:ok, %{workers: List.to_tuple(workers), messages: 0}}
  end

  @impl true
  def handle_call(:stats, _from, state), do: {:reply, %{messages: state.messages}, state}

  @impl true
  def handle_info({:"$switchboard_fanout", pids, packed, payload}, %{workers: workers} = state) do
    count = tuple_size(workers)

    pids
    |> Enum.group_by(&:erlang.phash2(&1, count))
    |> Enum.each(fn {index, worker_pids} ->
      send(elem(workers, index), {:deliver, worker_pids, packed, payload})
    end)

    {:noreply, %{state | messages: state.messages + 1}}
  end

  def handle_info({:EXIT, pid, _reason}, %{workers: workers} = state) do
    workers =
      workers
      |> Tuple.to_list()
      |> Enum.map(fn worker -> if worker == pid, do: start_worker(), else: worker end)
      |> List.to_tuple()

    {:noreply, %{state | workers: workers}}
  end

  def handle_info(_other, state), do: {:noreply, state}

  defp start_worker, do: spawn_link(&worker_loop/0)

  defp worker_loop do
    receive do
      {:deliver, pids, packed, payload} ->
        message = if packed, do: Pure.unpack(payload), else: payload
        Pure.deliver(pids, message)
        worker_loop()

      _other ->
        worker_loop()
    end
  end
end
