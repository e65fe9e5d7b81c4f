defmodule Switchboard.Semaphore.Behaviour do
  @moduledoc """
  The contract shared by `Switchboard.Semaphore` (native) and
  `Switchboard.Semaphore.Pure` (ETS), after discord/semaphore's API.

  A semaphore is named by any term and created on first use. `acquire/2`
  takes a slot when fewer than `max` are in use and records the calling
  process as its holder in the same step; `release/1` gives one of the
  caller's slots back. When a holder exits, every slot it still holds is
  given back at once (the implementation monitors holders; there is no
  sweeper). `max` is read at each call: lowering it never changes the count,
  it only refuses new slots until enough are released.

  `reset/2` sets the count to slots that belong to nobody (the repair tool
  discord/semaphore offers): current holders lose their slots, and any
  process's `release/1` gives the unowned slots back one by one.

  `use Switchboard.Semaphore.Behaviour` defines `call/3`, the `_linksafe`
  variants and the argument checks on top of the callbacks, so both
  implementations share them.
  """

  @typedoc "A semaphore's name: any term."
  @type name :: term()

  @doc "Takes a slot for the caller when fewer than `max` are in use."
  @callback acquire(name(), max :: non_neg_integer()) :: boolean()
  @doc "Gives back one of the caller's slots (or an unowned one); `:ok` either way."
  @callback release(name()) :: :ok
  @doc "How many slots are in use."
  @callback count(name()) :: non_neg_integer()
  @doc "Sets the count to `value` slots owned by nobody."
  @callback reset(name(), value :: non_neg_integer()) :: :ok

  @doc "Raises the `ArgumentError` for a bad `max` or `reset/2` value (`what`)."
  @spec bad_limit!(:max | :value, term()) :: no_return()
  def bad_limit!(what, value) do
    raise ArgumentError, "expected #{what} to be a non-negative integer, got: #{inspect(value)}"
  end

  @doc "Raises the `ArgumentError` for a `fun` that is not a zero-arity function."
  @spec bad_fun!(term()) :: no_return()
  def bad_fun!(fun) do
    raise ArgumentError, "expected a function of arity 0, got: #{inspect(fun)}"
  end

  defmacro __using__(_opts) do
    quote do
      @behaviour Switchboard.Semaphore.Behaviour

      @doc """
      Runs `fun` holding a slot of `name`, or returns `{:error, :max}` when
      `max` slots are in use. The slot is released when `fun` returns or
      raises, and when the caller dies in the middle.
      """
      @spec call(term(), non_neg_integer(), (() -> result)) :: result | {:error, :max}
            when result: term()
      def call(name, max, fun) when is_function(fun, 0) do
        if acquire(name, max) do
          try do
            fun.()
          after
            release(name)
          end
        else
          {:error, :max}
        end
      end

      def call(_name, _max, fun), do: Switchboard.Semaphore.Behaviour.bad_fun!(fun)

      @doc """
      discord/semaphore's link-safe acquire. Every acquisition here is
      link-safe (a dead holder's slots are freed at once), so this is
      `acquire/2`; `id` is accepted for compatibility and not used.
      """
      @spec acquire_linksafe(term(), term(), non_neg_integer()) :: boolean()
      def acquire_linksafe(name, _id, max), do: acquire(name, max)

      @doc "The counterpart of `acquire_linksafe/3`: `release/1`."
      @spec release_linksafe(term(), term()) :: :ok
      def release_linksafe(name, _id), do: release(name)

      @doc "discord/semaphore's link-safe `call/3`: the same as `call/3` here."
      @spec call_linksafe(term(), non_neg_integer(), (() -> result)) :: result | {:error, :max}
            when result: term()
      def call_linksafe(name, max, fun), do: call(name, max, fun)
    end
  end
end
