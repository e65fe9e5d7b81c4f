defmodule Switchboard.SortedSet do
  @moduledoc """
  An order-statistic sorted set of any Erlang terms, held natively: O(log n)
  insert, remove, index-of and item-at-index, for guild member lists.

  Items are ordered by Erlang term order and compared with `==`, the
  semantics of `:gb_sets` and ETS `ordered_set`: `1` and `1.0` are the same
  item and the first one inserted is kept.

  The set is a native resource, mutable and shared between processes like an
  ETS table: `add/2` changes the set in place and returns it, so code written
  for an immutable set keeps working. Many processes may read and write one
  set at once; readers run concurrently (each scheduler counts its readers
  on a cache line of its own, as ETS `read_concurrency` does, so reads
  scale with cores), writers take turns, and no call holds a normal
  scheduler for long. Writers on a busy set are combined: `add/2` and
  `remove/2` calls queue their change, and the writer holding the set
  applies the queued changes of the others in its turn (each call still
  returns its own result), so many writers keep about the throughput of
  one instead of queueing for the lock one by one. A waiting writer turns
  new readers away, and readers waiting when a write ends go in before the
  next one, so neither side starves the other. Work is counted in bytes as well as items: a call
  whose items are large (a 100 MB binary, a slice of a thousand 50 KB
  items) runs on a dirty scheduler like a bulk operation over a large set,
  and a call that finds the set busy for more than tens of microseconds waits
  on a dirty scheduler instead of blocking a normal one.

  Like ETS, the set keeps what its items refer to alive: an item holding a
  reference to a NIF resource, an `:atomics` or `:counters` array, or a fun
  (another set, say) stays usable after the process that made it exits,
  for as long as the set holds the item.

  `Enum` over a set that other processes write meanwhile continues each
  chunk from the last item it saw (`slice_after/3`), so, like
  `:ets.next/2` on an `ordered_set`, every item present for the whole walk
  is seen exactly once, in order.

  The API follows `Discord.SortedSet` (`add`, `index_add`, `remove`,
  `index_remove`, `find_index`, `at`, `slice`, `size`, `to_list`,
  `from_enumerable`), so switching is a change of alias. It adds
  `remove_at/2`, `lower_bound/2`, `range/3`, `slice_after/3`, `from_sorted/2`
  and implements `Enumerable`, `Collectable` and `Inspect`.

  `Switchboard.SortedSet.Pure` is the pure-Elixir twin with the same API;
  both implement `Switchboard.SortedSet.Behaviour`.
  """

  @behaviour Switchboard.SortedSet.Behaviour

  alias Switchboard.NIF
  alias Switchboard.SortedSet.Common

  @enforce_keys [:ref]
  defstruct [:ref]

  @opaque t :: %__MODULE__{ref: reference()}
  @type item :: term()
  @type index :: non_neg_integer()

  # Indexes beyond this are out of range of any set (and of int64).
  @max_index 0x3FFFFFFFFFFFFFFF

  @doc """
  Creates an empty set.

  ## Options

    * `:capacity` - expected number of items, a hint for preallocation
      (default `0`).

  ## Examples

      iex> set = Switchboard.SortedSet.new()
      iex> Switchboard.SortedSet.size(set)
      0

      iex> Switchboard.SortedSet.new(capacity: -1)
      ** (ArgumentError) expected :capacity to be a non-negative integer, got: -1
  """
  @spec new(keyword()) :: t()
  @impl true
  def new(opts \\ []) do
    capacity = Common.capacity!(opts)
    %__MODULE__{ref: NIF.sorted_set_new(min(capacity, @max_index))}
  end

  @doc """
  Builds a set from any enumerable: sorts it and drops duplicates (keeping
  the first of items that are `==`).

  ## Options

    * `:capacity` - accepted for symmetry with `new/1`.

  ## Examples

      iex> Switchboard.SortedSet.from_enumerable([3, 1, 2, 1.0]) |> Switchboard.SortedSet.to_list()
      [1, 2, 3]
  """
  @spec from_enumerable(Enumerable.t(), keyword()) :: t()
  @impl true
  def from_enumerable(enumerable, opts \\ []) do
    Common.capacity!(opts)
    %__MODULE__{ref: NIF.sorted_set_from_list(Common.item_list!(enumerable), false)}
  end

  @doc """
  Builds a set in O(n) from items already in strictly ascending term order.

  ## Examples

      iex> Switchboard.SortedSet.from_sorted([1, :a, "b"]) |> Switchboard.SortedSet.size()
      3

      iex> Switchboard.SortedSet.from_sorted([2, 1])
      ** (ArgumentError) from_sorted/2 expects strictly ascending items, got 2 before 1
  """
  @spec from_sorted(Enumerable.t(), keyword()) :: t()
  @impl true
  def from_sorted(enumerable, opts \\ []) do
    Common.capacity!(opts)
    items = Common.item_list!(enumerable)

    case NIF.sorted_set_from_list(items, true) do
      {:not_ascending, position} ->
        Common.not_ascending!(Enum.at(items, position - 1), Enum.at(items, position))

      ref ->
        %__MODULE__{ref: ref}
    end
  end

  @doc """
  Adds `item`; a set that already holds an item `==` to it is unchanged.

  ## Examples

      iex> set = Switchboard.SortedSet.new() |> Switchboard.SortedSet.add(2) |> Switchboard.SortedSet.add(1)
      iex> Switchboard.SortedSet.to_list(set)
      [1, 2]
  """
  @spec add(t(), item()) :: t()
  @impl true
  def add(%__MODULE__{ref: ref} = set, item) do
    NIF.sorted_set_add(ref, item)
    set
  end

  def add(other, _item), do: raise_not_a_set(other)

  @doc """
  Adds `item` and returns the index it landed at, or `nil` if it was
  already present.

  ## Examples

      iex> set = Switchboard.SortedSet.from_enumerable([1, 3])
      iex> {1, ^set} = Switchboard.SortedSet.index_add(set, 2)
      iex> {nil, ^set} = Switchboard.SortedSet.index_add(set, 2.0)
      iex> Switchboard.SortedSet.to_list(set)
      [1, 2, 3]
  """
  @spec index_add(t(), item()) :: {index() | nil, t()}
  @impl true
  def index_add(%__MODULE__{ref: ref} = set, item), do: {NIF.sorted_set_add(ref, item), set}
  def index_add(other, _item), do: raise_not_a_set(other)

  @doc """
  Removes `item` (or the item `==` to it) if present.

  ## Examples

      iex> Switchboard.SortedSet.from_enumerable([1, 2]) |> Switchboard.SortedSet.remove(1.0) |> Switchboard.SortedSet.to_list()
      [2]
  """
  @spec remove(t(), item()) :: t()
  @impl true
  def remove(%__MODULE__{ref: ref} = set, item) do
    NIF.sorted_set_remove(ref, item)
    set
  end

  def remove(other, _item), do: raise_not_a_set(other)

  @doc """
  Removes `item` and returns the index it had, or `nil` if it was absent.

  ## Examples

      iex> set = Switchboard.SortedSet.from_enumerable([:a, :b, :c])
      iex> {1, ^set} = Switchboard.SortedSet.index_remove(set, :b)
      iex> {nil, ^set} = Switchboard.SortedSet.index_remove(set, :b)
      iex> Switchboard.SortedSet.to_list(set)
      [:a, :c]
  """
  @spec index_remove(t(), item()) :: {index() | nil, t()}
  @impl true
  def index_remove(%__MODULE__{ref: ref} = set, item), do: {NIF.sorted_set_remove(ref, item), set}
  def index_remove(other, _item), do: raise_not_a_set(other)

  @doc """
  Removes the item at `index` (negative counts from the end) and returns it,
  or `nil` when the index is out of range.

  ## Examples

      iex> set = Switchboard.SortedSet.from_enumerable([:a, :b, :c])
      iex> {:c, ^set} = Switchboard.SortedSet.remove_at(set, -1)
      iex> {nil, ^set} = Switchboard.SortedSet.remove_at(set, 5)
      iex> Switchboard.SortedSet.to_list(set)
      [:a, :b]
  """
  @spec remove_at(t(), integer()) :: {item() | nil, t()}
  @impl true
  def remove_at(%__MODULE__{ref: ref} = set, index) when is_integer(index) do
    case in_index_range(index) && NIF.sorted_set_remove_at(ref, index) do
      {:ok, item} -> {item, set}
      _ -> {nil, set}
    end
  end

  def remove_at(%__MODULE__{}, index), do: raise_not_an_index(index)
  def remove_at(other, _index), do: raise_not_a_set(other)

  @doc """
  Returns the index of `item` (or of the item `==` to it), or `nil`.

  ## Examples

      iex> set = Switchboard.SortedSet.from_enumerable(["b", "a", "c"])
      iex> Switchboard.SortedSet.find_index(set, "c")
      2
      iex> Switchboard.SortedSet.find_index(set, "d")
      nil
  """
  @spec find_index(t(), item()) :: index() | nil
  @impl true
  def find_index(%__MODULE__{ref: ref}, item), do: NIF.sorted_set_find_index(ref, item)
  def find_index(other, _item), do: raise_not_a_set(other)

  @doc """
  Returns the index where `item` is, or where it would be inserted.

  ## Examples

      iex> set = Switchboard.SortedSet.from_enumerable([10, 20, 30])
      iex> Switchboard.SortedSet.lower_bound(set, 20)
      1
      iex> Switchboard.SortedSet.lower_bound(set, 25)
      2
  """
  @spec lower_bound(t(), item()) :: index()
  @impl true
  def lower_bound(%__MODULE__{ref: ref}, item), do: NIF.sorted_set_lower_bound(ref, item)
  def lower_bound(other, _item), do: raise_not_a_set(other)

  @doc """
  True when the set holds `item` (or an item `==` to it).

  ## Examples

      iex> Switchboard.SortedSet.from_enumerable([1, 2]) |> Switchboard.SortedSet.member?(2.0)
      true
  """
  @spec member?(t(), item()) :: boolean()
  @impl true
  def member?(%__MODULE__{ref: ref}, item), do: NIF.sorted_set_find_index(ref, item) != nil
  def member?(other, _item), do: raise_not_a_set(other)

  @doc """
  Returns the item at `index` (negative counts from the end), or `default`.

  ## Examples

      iex> set = Switchboard.SortedSet.from_enumerable([:a, :b, :c])
      iex> Switchboard.SortedSet.at(set, 0)
      :a
      iex> Switchboard.SortedSet.at(set, -1)
      :c
      iex> Switchboard.SortedSet.at(set, 3, :none)
      :none
      iex> Switchboard.SortedSet.at(set, "0")
      ** (ArgumentError) expected an integer index, got: "0"
  """
  @spec at(t(), integer(), default) :: item() | default when default: term()
  @impl true
  def at(set, index, default \\ nil)

  def at(%__MODULE__{ref: ref}, index, default) when is_integer(index) do
    case in_index_range(index) && NIF.sorted_set_at(ref, index) do
      {:ok, item} -> item
      _ -> default
    end
  end

  def at(%__MODULE__{}, index, _default), do: raise_not_an_index(index)
  def at(other, _index, _default), do: raise_not_a_set(other)

  @doc """
  Returns up to `amount` items starting at index `start`: truncated at the
  end, `[]` past it.

  ## Examples

      iex> set = Switchboard.SortedSet.from_enumerable(1..10)
      iex> Switchboard.SortedSet.slice(set, 8, 5)
      [9, 10]
      iex> Switchboard.SortedSet.slice(set, 20, 5)
      []
  """
  @spec slice(t(), non_neg_integer(), non_neg_integer()) :: [item()]
  @impl true
  def slice(%__MODULE__{ref: ref}, start, amount)
      when is_integer(start) and start >= 0 and is_integer(amount) and amount >= 0 do
    if start > @max_index, do: [], else: NIF.sorted_set_slice(ref, start, min(amount, @max_index))
  end

  def slice(%__MODULE__{}, start, amount),
    do: Common.bad_integers!(index: start, amount: amount)

  def slice(other, _start, _amount), do: raise_not_a_set(other)

  @doc """
  Returns up to `amount` items that come strictly after `item` in term
  order (an item `==` to it excluded), whether or not `item` is in the set.

  This is how to walk a set that other processes change meanwhile: each
  call continues from the last item seen, as `:ets.next/2` does, so items
  that stay in the set are seen exactly once. `Enum` over a set walks it
  this way.

  ## Examples

      iex> set = Switchboard.SortedSet.from_enumerable(1..10)
      iex> Switchboard.SortedSet.slice_after(set, 3, 2)
      [4, 5]
      iex> Switchboard.SortedSet.slice_after(set, 9.5, 5)
      [10]
  """
  @spec slice_after(t(), item(), non_neg_integer()) :: [item()]
  @impl true
  def slice_after(%__MODULE__{ref: ref}, item, amount) when is_integer(amount) and amount >= 0,
    do: NIF.sorted_set_slice_after(ref, item, min(amount, @max_index))

  def slice_after(%__MODULE__{}, _item, amount), do: Common.bad_integers!(amount: amount)

  def slice_after(other, _item, _amount), do: raise_not_a_set(other)

  @doc """
  Returns the items `x` with `min <= x <= max` in term order.

  ## Examples

      iex> set = Switchboard.SortedSet.from_enumerable([1, 5, 10, :a])
      iex> Switchboard.SortedSet.range(set, 2, 10)
      [5, 10]
  """
  @spec range(t(), item(), item()) :: [item()]
  @impl true
  def range(%__MODULE__{ref: ref}, min, max), do: NIF.sorted_set_range(ref, min, max)
  def range(other, _min, _max), do: raise_not_a_set(other)

  @doc """
  Number of items, in O(1).

  ## Examples

      iex> Switchboard.SortedSet.from_enumerable([1, 1, 2]) |> Switchboard.SortedSet.size()
      2
  """
  @spec size(t()) :: non_neg_integer()
  @impl true
  def size(%__MODULE__{ref: ref}), do: NIF.sorted_set_size(ref)
  def size(other), do: raise_not_a_set(other)

  @doc """
  All items, in order.

  ## Examples

      iex> Switchboard.SortedSet.from_enumerable([{1, "b"}, {0, "z"}]) |> Switchboard.SortedSet.to_list()
      [{0, "z"}, {1, "b"}]
  """
  @spec to_list(t()) :: [item()]
  @impl true
  def to_list(%__MODULE__{ref: ref}), do: NIF.sorted_set_to_list(ref)
  def to_list(other), do: raise_not_a_set(other)

  @doc """
  Removes every item.

  ## Examples

      iex> Switchboard.SortedSet.from_enumerable([1, 2]) |> Switchboard.SortedSet.clear() |> Switchboard.SortedSet.size()
      0
  """
  @spec clear(t()) :: t()
  @impl true
  def clear(%__MODULE__{ref: ref} = set) do
    NIF.sorted_set_clear(ref)
    set
  end

  def clear(other), do: raise_not_a_set(other)

  @doc """
  An independent copy of the set (later changes to one do not affect the other).

  ## Examples

      iex> set = Switchboard.SortedSet.from_enumerable([1])
      iex> copy = Switchboard.SortedSet.copy(set)
      iex> Switchboard.SortedSet.add(copy, 2) |> Switchboard.SortedSet.size()
      2
      iex> Switchboard.SortedSet.size(set)
      1
  """
  @spec copy(t()) :: t()
  @impl true
  def copy(%__MODULE__{ref: ref}), do: %__MODULE__{ref: NIF.sorted_set_copy(ref)}
  def copy(other), do: raise_not_a_set(other)

  @doc """
  Bytes the set holds natively (tree nodes and item encodings).

  ## Examples

      iex> Switchboard.SortedSet.from_enumerable(1..1000) |> Switchboard.SortedSet.memory() > 0
      true
  """
  @spec memory(t()) :: non_neg_integer()
  @impl true
  def memory(%__MODULE__{ref: ref}), do: NIF.sorted_set_memory(ref)
  def memory(other), do: raise_not_a_set(other)

  # ---------------------------------------------------------------------------

  defp in_index_range(index), do: index >= -@max_index and index <= @max_index

  defp raise_not_a_set(other), do: Common.not_a_set!(__MODULE__, other)
  defp raise_not_an_index(index), do: Common.bad_integers!(index: index)
end

defimpl Enumerable, for: Switchboard.SortedSet do
  alias Switchboard.SortedSet

  # Items are read in chunks so a reduce over a huge set never copies it whole.
  @chunk 1000

  def count(set), do: {:ok, SortedSet.size(set)}
  def member?(set, item), do: {:ok, SortedSet.member?(set, item)}

  def slice(set) do
    size = SortedSet.size(set)

    {:ok, size,
     fn
       start, length, 1 ->
         SortedSet.slice(set, start, length)

       start, length, step ->
         set |> SortedSet.slice(start, (length - 1) * step + 1) |> Enum.take_every(step)
     end}
  end

  # Each chunk continues from the last item seen, not from an index: another
  # process writing the set meanwhile shifts indexes, and reading by index
  # would then skip or repeat items. Like `:ets.next/2` on an ordered_set,
  # every item present for the whole enumeration is seen exactly once, in
  # order.
  def reduce(set, acc, fun), do: reduce_chunk(set, :first, [], acc, fun)

  defp reduce_chunk(_set, _last, _items, {:halt, acc}, _fun), do: {:halted, acc}

  defp reduce_chunk(set, last, items, {:suspend, acc}, fun),
    do: {:suspended, acc, &reduce_chunk(set, last, items, &1, fun)}

  defp reduce_chunk(set, _last, [item | rest], {:cont, acc}, fun),
    do: reduce_chunk(set, {:after, item}, rest, fun.(item, acc), fun)

  defp reduce_chunk(set, last, [], {:cont, acc}, fun) do
    case next_chunk(set, last) do
      [] -> {:done, acc}
      items -> reduce_chunk(set, last, items, {:cont, acc}, fun)
    end
  end

  defp next_chunk(set, :first), do: SortedSet.slice(set, 0, @chunk)
  defp next_chunk(set, {:after, item}), do: SortedSet.slice_after(set, item, @chunk)
end

defimpl Collectable, for: Switchboard.SortedSet do
  alias Switchboard.SortedSet

  def into(set) do
    fun = fn
      set, {:cont, item} -> SortedSet.add(set, item)
      set, :done -> set
      _set, :halt -> :ok
    end

    {set, fun}
  end
end

defimpl Inspect, for: Switchboard.SortedSet do
  def inspect(set, opts),
    do: Switchboard.SortedSet.Common.inspect_set(Switchboard.SortedSet, set, opts)
end
