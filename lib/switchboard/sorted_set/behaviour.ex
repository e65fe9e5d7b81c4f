defmodule Switchboard.SortedSet.Behaviour do
  @moduledoc """
  The contract of an order-statistic sorted set, implemented by
  `Switchboard.SortedSet` (native, mutable and shared like an ETS table) and
  `Switchboard.SortedSet.Pure` (a persistent pure-Elixir B+ tree).

  Items are any terms, kept in Erlang term order and compared with `==`
  (the semantics of `:gb_sets` and ETS `ordered_set`): `1` and `1.0` are
  the same item, and the first one added is kept. Indexes count from 0;
  where a negative index is allowed it counts from the end.

  Every function that "changes" a set returns the set to use afterwards:
  the native set returns itself, changed in place; the pure one returns a
  new version. Code that always uses the returned set works with both.

  Both raise the same `ArgumentError` for the same bad input, worded in
  one place (`Switchboard.SortedSet.Common`): a term that is not a set
  (`"expected a <module>, got: <term>"`), a non-integer or negative index
  or amount, an improper list or a non-enumerable, items of `from_sorted/2`
  that are not strictly ascending.
  """

  @typedoc "A set of this implementation."
  @type set :: struct()

  @typedoc "An item: any term. Items are ordered by term order and equal when `==`."
  @type item :: term()

  @typedoc "A position in the set, from 0."
  @type index :: non_neg_integer()

  @doc "An empty set. `:capacity` (a non-negative integer, default `0`) is a size hint."
  @callback new(opts :: keyword()) :: set()

  @doc "A set of the items of a proper list or an enumerable: sorted, the first of `==` items kept."
  @callback from_enumerable(Enumerable.t(), opts :: keyword()) :: set()

  @doc "A set built in O(n) from items in strictly ascending term order; raises otherwise."
  @callback from_sorted(Enumerable.t(), opts :: keyword()) :: set()

  @doc "Adds `item` unless an item `==` to it is present."
  @callback add(set(), item()) :: set()

  @doc "Like `add/2`, also returning the index the item landed at, or `nil` if it was present."
  @callback index_add(set(), item()) :: {index() | nil, set()}

  @doc "Removes the item `==` to `item`, if present."
  @callback remove(set(), item()) :: set()

  @doc "Like `remove/2`, also returning the index the item had, or `nil` if it was absent."
  @callback index_remove(set(), item()) :: {index() | nil, set()}

  @doc "Removes the item at `index` (negative from the end): `{item, set}`, or `{nil, set}` out of range."
  @callback remove_at(set(), integer()) :: {item() | nil, set()}

  @doc "The index of the item `==` to `item`, or `nil`."
  @callback find_index(set(), item()) :: index() | nil

  @doc "The index where `item` is, or where it would be inserted."
  @callback lower_bound(set(), item()) :: index()

  @doc "True when an item `==` to `item` is in the set."
  @callback member?(set(), item()) :: boolean()

  @doc "The item at `index` (negative from the end), or `default`."
  @callback at(set(), integer(), default :: term()) :: item() | term()

  @doc "Up to `amount` items from index `start`, in order (truncated at the end)."
  @callback slice(set(), start :: non_neg_integer(), amount :: non_neg_integer()) :: [item()]

  @doc """
  Up to `amount` items strictly after `item` in term order, whether or not
  `item` is in the set: the way to walk a set in chunks, each continuing
  from the last item seen.
  """
  @callback slice_after(set(), item(), amount :: non_neg_integer()) :: [item()]

  @doc "The items `x` with `min <= x <= max` (term order, bounds inclusive under `==`)."
  @callback range(set(), min :: item(), max :: item()) :: [item()]

  @doc "The number of items, in O(1)."
  @callback size(set()) :: non_neg_integer()

  @doc "All items, in order."
  @callback to_list(set()) :: [item()]

  @doc "A set with no items."
  @callback clear(set()) :: set()

  @doc "A set with the same items that later changes to the original do not affect."
  @callback copy(set()) :: set()

  @doc "Bytes the set holds (natively, or on the process heap)."
  @callback memory(set()) :: non_neg_integer()
end
