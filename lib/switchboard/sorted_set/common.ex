defmodule Switchboard.SortedSet.Common do
  @moduledoc false
  # What the sorted-set twins (Switchboard.SortedSet and
  # Switchboard.SortedSet.Pure) share: the one place they check arguments
  # and word their errors, so the same bad input raises the same
  # ArgumentError from both (only the module named as the expected set
  # differs), and the one way they are inspected.

  @doc "Checks `new/1`-style options; returns the capacity hint."
  @spec capacity!(term()) :: non_neg_integer()
  def capacity!(opts) when is_list(opts) do
    case Keyword.get(opts, :capacity, 0) do
      capacity when is_integer(capacity) and capacity >= 0 ->
        capacity

      other ->
        raise ArgumentError,
              "expected :capacity to be a non-negative integer, got: #{inspect(other)}"
    end
  end

  def capacity!(other) do
    raise ArgumentError, "expected options to be a keyword list, got: #{inspect(other)}"
  end

  @doc "The items of a proper list or an enumerable, as a list."
  @spec item_list!(term()) :: list()
  def item_list!(list) when is_list(list) and length(list) >= 0, do: list

  def item_list!(term) do
    if not is_list(term) and Enumerable.impl_for(term) != nil do
      Enum.to_list(term)
    else
      raise ArgumentError, "expected a proper list or an enumerable, got: #{inspect(term)}"
    end
  end

  @doc "Raises for two neighbours of `from_sorted/2` that are not strictly ascending."
  @spec not_ascending!(term(), term()) :: no_return()
  def not_ascending!(before, item) do
    raise ArgumentError,
          "from_sorted/2 expects strictly ascending items, got " <>
            "#{inspect(before)} before #{inspect(item)}"
  end

  @doc "Raises for a term given where a set of `module` was expected."
  @spec not_a_set!(module(), term()) :: no_return()
  def not_a_set!(module, term) do
    raise ArgumentError, "expected a #{inspect(module)}, got: #{inspect(term)}"
  end

  @doc """
  Raises for the first of `checks` (`index: value`, `amount: value`) that is
  not a (non-negative) integer.
  """
  @spec bad_integers!(keyword()) :: no_return()
  def bad_integers!(checks) do
    Enum.each(checks, fn
      {name, value} when not is_integer(value) ->
        raise ArgumentError, "expected an integer #{name}, got: #{inspect(value)}"

      {name, value} when value < 0 ->
        raise ArgumentError, "expected a non-negative integer #{name}, got: #{inspect(value)}"

      _valid ->
        :ok
    end)

    raise ArgumentError, "invalid arguments: #{inspect(checks)}"
  end

  @doc """
  Inspects a set of `module` as `#Module<[items]>`, fetching only the items
  inspect can show (`slice`, one past the limit, is enough for Inspect.List
  to print the trailing "..."). Charlists show as lists: items are terms.
  """
  @spec inspect_set(module(), struct(), Inspect.Opts.t()) :: Inspect.Algebra.t()
  def inspect_set(module, set, opts) do
    items =
      case opts.limit do
        :infinity -> module.to_list(set)
        limit -> module.slice(set, 0, limit + 1)
      end

    opts = %Inspect.Opts{opts | charlists: :as_lists}
    Inspect.Algebra.concat(["##{inspect(module)}<", Inspect.List.inspect(items, opts), ">"])
  end
end
