defmodule Switchboard.Fanout.Partitioner do
  @moduledoc """
  Receives fan-outs from other nodes and delivers them to this node's
  receivers.

  The `:switchboard` application starts one on every node, registered under
  this module's name. Each fan-out reaches it as one distribution message
  `{:"$switchboard_fanout", pids, packed, payload}` (from a
  `Switchboard.Fanout.Sender` on the sending node). It splits the pids
  natively, in one pass, into one share per worker process (one worker per
  scheduler) by a hash of the receiver; a share is a native array, so
  handing it to a worker copies no list. It decodes a packed payload once,
  and each worker sends the message to its share with `enif_send` in time
  slices, so the original message term arrives and the node's schedulers
  deliver in parallel. A receiver is always served by the same worker, and
  both the partitioner and its workers handle their mailboxes in order,
  which keeps each sender's order.

  A malformed fan-out message (pids that are not a proper list of pids and
  nils, a packed payload that is not valid ETF) is dropped whole and
  counted as `:rejected`.
  """
  use GenServer

  @typedoc "What the partitioner has done since it started."
  @type stats :: %{
          messages: non_neg_integer(),
          delivered: non_neg_integer(),
          skipped: non_neg_integer(),
          rejected: non_neg_integer()
        }

  @doc false
  def start_link(_opts), do: GenServer.start_link(__MODULE__, [], name: __MODULE__)

  @doc """
  Fan-out messages received from other nodes, receivers delivered to,
  receivers skipped (dead pids, nils) and malformed fan-out messages
  dropped, on `node` (default: this node).

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
    {:ok, %{workers: List.to_tuple(workers), messages: 0, delivered: 0, skipped: 0, rejected: 0}}
  end

  @impl true
  def handle_info({:"$switchboard_fanout", pids, packed, payload}, state) do
    state = %{state | messages: state.messages + 1}
    workers = state.workers

    case split(pids, tuple_size(workers), packed, payload) do
      {:ok, shares, skipped, message} ->
        for index <- 0..(tuple_size(workers) - 1), (share = elem(shares, index)) != nil do
          send(elem(workers, index), {:deliver, share, message})
        end

        {:noreply, %{state | skipped: state.skipped + skipped}}

      :error ->
        {:noreply, %{state | rejected: state.rejected + 1}}
    end
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
    {:reply, Map.take(state, [:messages, :delivered, :skipped, :rejected]), state}
  end

  # The shares (by receiver) and the message, or :error for a malformed
  # fan-out (nothing is sent then).
  defp split(pids, count, packed, payload) do
    {shares, skipped} = Switchboard.Fanout.partition(pids, count)
    message = if packed, do: Switchboard.Fanout.unpack(payload), else: payload
    {:ok, shares, skipped, message}
  rescue
    _ in [ArgumentError, FunctionClauseError] -> :error
  end

  defp start_worker do
    partitioner = self()
    spawn_link(fn -> worker_loop(partitioner) end)
  end

  defp worker_loop(partitioner) do
    receive do
      {:deliver, share, message} ->
        {delivered, skipped} = Switchboard.Fanout.deliver_share(share, message)
        send(partitioner, {:delivered, delivered, skipped})
        worker_loop(partitioner)

      _other ->
        worker_loop(partitioner)
    end
  end
end
