defmodule Switchboard.Semaphore.Pure do
  @moduledoc """
  The pure-Elixir twin of `Switchboard.Semaphore`: discord/semaphore's ETS
  counters, held to the same contract (`Switchboard.Semaphore.Behaviour`).

  Counts live in a `write_concurrency` ETS table as `{name, count, unowned}`
  and each holder's slots as `{{name, pid}, held}`. A process is monitored
  by this module's server from its first slot on (a `{pid, name}` index
  says which names it held), so its death gives its slots back as soon as
  the `:DOWN` message is handled: there is no sweeper. `acquire/2` adds one
  and takes it back if that went past `max`, so lowering `max` never moves
  the count (discord's threshold update set it to `max`).

  One difference from the native module remains: ETS cannot update the
  count and the holder's row in one step, so a holder killed between the
  two updates of `acquire/2` (a window of one ETS call) leaks its slot
  until `reset/2`. The native module takes both in one call.

  The server is started by the application (`Switchboard.Application`).

  ## Examples

      iex> Switchboard.Semaphore.Pure.acquire(:doc_pure_semaphore, 1)
      true
      iex> Switchboard.Semaphore.Pure.call(:doc_pure_semaphore, 1, fn -> :never end)
      {:error, :max}
      iex> Switchboard.Semaphore.Pure.release(:doc_pure_semaphore)
      :ok
      iex> Switchboard.Semaphore.Pure.acquire(:doc_pure_semaphore, nil)
      ** (ArgumentError) expected max to be a non-negative integer, got: nil
  """
  use Switchboard.Semaphore.Behaviour
  use GenServer

  alias Switchboard.Semaphore.Behaviour

  @counts :switchboard_semaphore_counts
  @holders :switchboard_semaphore_holders
  @held_names :switchboard_semaphore_held_names
  @monitored :switchboard_semaphore_monitored

  @impl Behaviour
  def acquire(_name, 0), do: false

  def acquire(name, max) when is_integer(max) and max > 0 do
    if :ets.update_counter(@counts, name, {2, 1}, {name, 0, 0}) > max do
      :ets.update_counter(@counts, name, {2, -1})
      false
    else
      pid = self()
      key = {name, pid}

      if :ets.update_counter(@holders, key, {2, 1}, {key, 0}) == 1 do
        :ets.insert(@held_names, {pid, name})
        if :ets.insert_new(@monitored, {pid}), do: send(__MODULE__, {:monitor, pid})
      end

      true
    end
  end

  def acquire(_name, max), do: Behaviour.bad_limit!(:max, max)

  @impl Behaviour
  def release(name) do
    key = {name, self()}

    held_before =
      try do
        hd(:ets.update_counter(@holders, key, [{2, 0}, {2, -1, 0, 0}]))
      rescue
        ArgumentError -> 0
      end

    cond do
      held_before > 0 ->
        :ets.update_counter(@counts, name, {2, -1})

      unowned_taken?(name) ->
        :ets.update_counter(@counts, name, {2, -1})

      true ->
        :ok
    end

    :ok
  end

  defp unowned_taken?(name) do
    hd(:ets.update_counter(@counts, name, [{3, 0}, {3, -1, 0, 0}])) > 0
  rescue
    ArgumentError -> false
  end

  @impl Behaviour
  def count(name) do
    :ets.lookup_element(@counts, name, 2)
  rescue
    ArgumentError -> 0
  end

  @impl Behaviour
  def reset(name, value \\ 0)

  def reset(name, value) when is_integer(value) and value >= 0 do
    :ets.select_replace(@holders, [
      {{{name, :"$1"}, :_}, [], [{{{{{:const, name}, :"$1"}}, 0}}]}
    ])

    :ets.insert(@counts, {name, value, value})
    :ok
  end

  def reset(_name, value), do: Behaviour.bad_limit!(:value, value)

  ## The monitor server

  @doc false
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc false
  def child_spec(opts) do
    %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}}
  end

  @impl GenServer
  def init(_opts) do
    options = [:public, :named_table, write_concurrency: true, read_concurrency: true]
    :ets.new(@counts, [:set | options])
    :ets.new(@holders, [:set | options])
    :ets.new(@held_names, [:bag | options])
    :ets.new(@monitored, [:set | options])
    {:ok, nil}
  end

  @impl GenServer
  def handle_info({:monitor, pid}, state) do
    Process.monitor(pid)
    {:noreply, state}
  end

  def handle_info({:DOWN, _ref, :process, pid, _reason}, state) do
    for {^pid, name} <- :ets.take(@held_names, pid) do
      case :ets.take(@holders, {name, pid}) do
        [{_, held}] when held > 0 -> :ets.update_counter(@counts, name, {2, -held})
        _ -> :ok
      end
    end

    :ets.delete(@monitored, pid)
    {:noreply, state}
  end
end
