defmodule Switchboard.Fanout.Partitioner do
  @moduledoc """
  Receives fan-outs from other nodes and delivers them to this node's
  receivers.

  The `:switchboard` application starts one on every node, registered under
  this module's name. Each fan-out reaches it as one distribution message
  `{:"$switchboard_fanout", pids, packed, payload}` (from a
  `Switchboard.Fanout.Sender` on the sending node). It decodes a packed
  payload once, splits the pids over one worker process per scheduler by
  `:erlang.phash2/2` of the receiver, and each worker delivers its share
  with the native inline path (`enif_send`, in time slices), so the
  original message term arrives and the node's schedulers deliver in
  parallel. A receiver is always served by the same worker, and both the
  partitioner and its workers handle their mailboxes in order, which keeps
  each sender's order.
  """
  use GenServer

  @typedoc "What the partitioner has done since it started."
  @type stats :: %{
          messages: non_neg_integer(),
          delivered: non_neg_integer(),
          skipped: non_neg_integer()
        }

  @doc false
  def start_link(_opts), do: GenServer.start_link(__MODULE__, [], name: __MODULE__)

  @doc """
  Fan-out messages received from other nodes, receivers delivered to and
  receivers skipped (dead pids), on `node` (default: this node).

  ## Examples

      iex> %{messages: messages} = Switchboard.Fanout.Partitioner.stats()
      iex> is_integer(messages)
      true
  """
  @spec stats(node()) :: stats()
  def stats(node \\ node()), do: GenServer.call({__MODULE__, node}, :stats)

  @impl true
  def init([]) do
    Process.flag(:trap_exit, true)
    Process.flag(:message_queue_data, :off_heap)
    workers = for _ <- 1..System.schedulers_online(), do: start_worker()
    {:ok, %{workers: List.to_tuple(workers), messages: 0, delivered: 0, skipped: 0}}
  end

  @impl true
  def handle_info({:"$switchboard_fanout", pids, packed, payload}, state) do
    message = if packed, do: Switchboard.Fanout.unpack(payload), else: payload
    workers = state.workers
    shares = split(pids, tuple_size(workers))

    for index <- 0..(tuple_size(workers) - 1), (share = elem(shares, index)) != [] do
      send(elem(workers, index), {:deliver, share, message})
    end

    {:noreply, %{state | messages: state.messages + 1}}
  end

  def handle_info({:delivered, delivered, skipped}, state) do
    {:noreply,
     %{state | delivered: state.delivered + delivered, skipped: state.skipped + skipped}}
  end

  def handle_info({:EXIT, pid, _reason}, state) do
    workers =
      state.workers
      |> Tuple.to_list()
      |> Enum.map(fn worker -> if worker == pid, do: start_worker(), else: worker end)
      |> List.to_tuple()

    {:noreply, %{state | workers: workers}}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def handle_call(:stats, _from, state) do
    {:reply, Map.take(state, [:messages, :delivered, :skipped]), state}
  end

  # The pids as a tuple of `count` lists, by receiver hash.
  defp split(pids, 1), do: {pids}
  defp split(pids, count), do: split(pids, count, Tuple.duplicate([], count))

  defp split([pid | rest], count, shares) do
    index = :erlang.phash2(pid, count)
    split(rest, count, put_elem(shares, index, [pid | elem(shares, index)]))
  end

  defp split([], _count, shares), do: shares

  defp start_worker do
    partitioner = self()
    spawn_link(fn -> worker_loop(partitioner) end)
  end

  defp worker_loop(partitioner) do
    receive do
      {:deliver, pids, message} ->
        {delivered, skipped} = Switchboard.Fanout.deliver_local(pids, message)
        send(partitioner, {:delivered, delivered, skipped})
        worker_loop(partitioner)

      _other ->
        worker_loop(partitioner)
    end
  end
end
