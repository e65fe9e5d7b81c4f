defmodule Switchboard.Semaphore do
  @moduledoc """
  Named counting semaphores in a native table, safe against dying holders.

  Guards a resource that many processes would otherwise stampede (a guild
  or registry process that thousands of sessions call at once): a caller
  that cannot get a slot backs off instead of queueing.

      if Switchboard.Semaphore.acquire({:guild_call, guild_id}, 100) do
        try do
          GenServer.call(guild, request)
        after
          Switchboard.Semaphore.release({:guild_call, guild_id})
        end
      end

  The API is discord/semaphore's (`acquire/2`, `release/1`, `call/3`,
  `count/1`, `reset/2`, `acquire_linksafe/3`, `call_linksafe/3`), with the
  contract of `Switchboard.Semaphore.Behaviour`: names are any term; a slot
  and its holder's record are taken in one native call under the name's
  shard lock; each name monitors its holders (a NIF resource monitor), so a
  holder that dies gives its slots back in the VM's `down` callback, at
  once; lowering `max` never changes the count.

  A process that released its last slot stays monitored (up to 64 idle
  holders per name), so a process that acquires and releases in a loop pays
  for one monitor. Names larger than 16 KiB are hashed on a dirty scheduler.
  Names are never removed from the table: use a bounded set of names.

  `Switchboard.Semaphore.Pure` is the ETS twin.

  ## Examples

      iex> Switchboard.Semaphore.acquire(:doc_semaphore, 1)
      true
      iex> Switchboard.Semaphore.acquire(:doc_semaphore, 1)
      false
      iex> Switchboard.Semaphore.count(:doc_semaphore)
      1
      iex> Switchboard.Semaphore.release(:doc_semaphore)
      :ok
      iex> Switchboard.Semaphore.call(:doc_semaphore, 1, fn -> :done end)
      :done
      iex> Switchboard.Semaphore.acquire(:doc_semaphore, -1)
      ** (ArgumentError) expected max to be a non-negative integer, got: -1
  """
  use Switchboard.Semaphore.Behaviour

  alias Switchboard.NIF
  alias Switchboard.Semaphore.Behaviour

  @doc """
  Takes a slot of `name` for the caller when fewer than `max` are in use.

  Returns `true` when a slot was taken. `max` is a non-negative integer;
  anything else raises `ArgumentError`.
  """
  @impl true
  @spec acquire(term(), non_neg_integer()) :: boolean()
  def acquire(name, max) when is_integer(max) and max >= 0, do: NIF.semaphore_acquire(name, max)
  def acquire(_name, max), do: Behaviour.bad_limit!(:max, max)

  @doc "Gives back one of the caller's slots of `name` (or an unowned one). Always `:ok`."
  @impl true
  @spec release(term()) :: :ok
  def release(name), do: NIF.semaphore_release(name)

  @doc "The number of slots of `name` in use (0 for a name never used)."
  @impl true
  @spec count(term()) :: non_neg_integer()
  def count(name), do: NIF.semaphore_count(name)

  @doc "Sets the count of `name` to `value` slots owned by nobody (default 0)."
  @impl true
  @spec reset(term(), non_neg_integer()) :: :ok
  def reset(name, value \\ 0)

  def reset(name, value) when is_integer(value) and value >= 0,
    do: NIF.semaphore_reset(name, value)

  def reset(_name, value), do: Behaviour.bad_limit!(:value, value)

  @doc false
  # {holders recorded, idle holders} for `name`, or nil: for tests.
  def holder_info(name), do: NIF.semaphore_info(name)
end
