defmodule Switchboard.SortedSet.Pure do
  # Tuning knobs, defined before the moduledoc uses them. Measured at 1M
  # random integers against leaves of 32..256 and nodes of 16..128: at that
  # size every level costs cache misses, so fewer levels win, until copying
  # bigger tuples on each update (and the garbage it leaves) costs more.
  # 128/32 was fastest, or within noise of the fastest, on every operation.
  @leaf_max 128
  @node_max 32

  @moduledoc """
  A persistent sorted set with O(log n) rank and select, in pure Elixir.

  Items are any Erlang terms, kept in Erlang term order and compared with
  `==`, exactly like `:gb_sets` and ETS `ordered_set`: `1` and `1.0` are
  the same item, and when an equal item is added again the set is unchanged
  (the first one added is kept). Every function that "changes" a set returns
  a new one; older versions stay valid and share most of their structure.

  It has the same API and semantics as the native sorted set, so it serves
  as the oracle in differential tests and as the baseline in benchmarks.

  ## Structure

  A B+ tree whose nodes are tuples. Leaves hold up to #{@leaf_max} items in
  order; inner nodes hold up to #{@node_max} children, the separators
  between them, and the number of items under each child. A lookup is one
  binary search per level, a rank or a select adds cached sizes on the way
  down, and an update copies one small tuple per level (leaves with
  `:erlang.insert_element/3`, a memcpy). A million items fit in four
  levels.

  | operation | cost |
  |---|---|
  | `add/2`, `remove/2`, `index_add/2`, `index_remove/2`, `remove_at/2` | O(log n) |
  | `member?/2`, `find_index/2`, `lower_bound/2`, `at/3` | O(log n) |
  | `slice/3`, `range/3` | O(log n + k) for k items returned |
  | `size/1` | O(1) |
  | `from_sorted/2` | O(n) |
  | `from_enumerable/2` | O(n log n) |

  It implements `Enumerable` (with constant-time `count` and logarithmic
  `member?` and slicing), `Collectable` and `Inspect`.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> set = Pure.from_enumerable([3, 1, 2, 1.0])
      #Switchboard.SortedSet.Pure<[1, 2, 3]>
      iex> Pure.find_index(set, 2)
      1
      iex> Pure.at(set, -1)
      3
  """

  @behaviour Switchboard.SortedSet.Behaviour

  import Bitwise, only: [>>>: 2]

  alias Switchboard.SortedSet.Common

  # Deleting below a quarter full merges with or borrows from a sibling; the
  # slack between min and max/2 keeps alternating add/remove from churning.
  @leaf_min div(@leaf_max, 4)
  @node_min max(div(@node_max, 4), 2)
  # Bulk builds leave a quarter of each node free so that the first inserts
  # after a build do not split every node they touch.
  @leaf_fill div(@leaf_max * 3, 4)
  @node_fill div(@node_max * 3, 4)

  defstruct size: 0, height: 0, root: {}

  @typedoc "An item: any term. Items are ordered by term order and equal when `==`."
  @type item :: term()

  @typedoc "An index into the set; negative indices count from the end where allowed."
  @type index :: integer()

  # A leaf is a tuple of items; an inner node is {separators, children, sizes}.
  @opaque tree :: tuple()

  @type t :: %__MODULE__{size: non_neg_integer(), height: non_neg_integer(), root: tree()}

  ## Construction

  @doc """
  Returns an empty set.

  ## Options

    * `:capacity` - an expected number of items. Accepted for parity with the
      native set, which preallocates; ignored here. Defaults to `0`.

  ## Examples

      iex> Switchboard.SortedSet.Pure.new()
      #Switchboard.SortedSet.Pure<[]>
      iex> Switchboard.SortedSet.Pure.new(capacity: 1_000) |> Switchboard.SortedSet.Pure.size()
      0
  """
  @spec new(keyword()) :: t()
  @impl true
  def new(opts \\ []) do
    Common.capacity!(opts)
    %__MODULE__{}
  end

  @doc """
  Builds a set from any enumerable, in O(n log n).

  The items are sorted and duplicates dropped; among items that are `==`,
  the first one in `enumerable` is kept.

  Raises `ArgumentError` if `enumerable` is an improper list or does not
  implement `Enumerable`.

  ## Options

    * `:capacity` - checked, and otherwise ignored, as in `new/1`.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> Pure.from_enumerable([3, 1.0, 2, 1])
      #Switchboard.SortedSet.Pure<[1.0, 2, 3]>
      iex> Pure.from_enumerable(%{b: 2, a: 1})
      #Switchboard.SortedSet.Pure<[a: 1, b: 2]>
      iex> Pure.from_enumerable(:not_enumerable)
      ** (ArgumentError) expected a proper list or an enumerable, got: :not_enumerable
  """
  @spec from_enumerable(Enumerable.t(), keyword()) :: t()
  @impl true
  def from_enumerable(enumerable, opts \\ [])

  def from_enumerable(%__MODULE__{} = set, opts) do
    Common.capacity!(opts)
    set
  end

  def from_enumerable(enumerable, opts) do
    Common.capacity!(opts)
    enumerable |> Common.item_list!() |> :lists.usort() |> build()
  end

  @doc """
  Builds a set from an enumerable already in strictly ascending term order,
  in O(n).

  Raises `ArgumentError` if two neighbours are not strictly ascending (this
  includes items that are `==`, such as `1` and `1.0`), or if `enumerable`
  is not a proper list or an enumerable.

  ## Options

    * `:capacity` - checked, and otherwise ignored, as in `new/1`.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> Pure.from_sorted(1..5) |> Pure.at(2)
      3
      iex> Pure.from_sorted([1, :atom, {:tuple}, "binary"]) |> Pure.size()
      4
      iex> Pure.from_sorted([1, 3, 2])
      ** (ArgumentError) from_sorted/2 expects strictly ascending items, got 3 before 2

  Items that are `==` are not strictly ascending:

      iex> Switchboard.SortedSet.Pure.from_sorted([1, 1.0])
      ** (ArgumentError) from_sorted/2 expects strictly ascending items, got 1 before 1.0
  """
  @spec from_sorted(Enumerable.t(), keyword()) :: t()
  @impl true
  def from_sorted(enumerable, opts \\ [])

  def from_sorted(%__MODULE__{} = set, opts) do
    Common.capacity!(opts)
    set
  end

  def from_sorted(enumerable, opts) do
    Common.capacity!(opts)
    list = Common.item_list!(enumerable)
    check_ascending!(list)
    build(list)
  end

  ## Updates

  @doc """
  Adds `item`, unless an item `==` to it is already present.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> Pure.new() |> Pure.add(2) |> Pure.add(1) |> Pure.add(2)
      #Switchboard.SortedSet.Pure<[1, 2]>
      iex> Pure.new() |> Pure.add(1) |> Pure.add(1.0)
      #Switchboard.SortedSet.Pure<[1]>
      iex> Pure.add([1, 2], 3)
      ** (ArgumentError) expected a Switchboard.SortedSet.Pure, got: [1, 2]
  """
  @spec add(t(), item()) :: t()
  @impl true
  def add(%__MODULE__{size: size, height: height, root: root} = set, item) do
    case insert(root, height, item, nil, size) do
      :exists ->
        set

      {:ok, root, _rank} ->
        %{set | size: size + 1, root: root}

      {:split, left, sep, right, left_size, right_size, _rank} ->
        grow(set, left, sep, right, left_size, right_size)
    end
  end

  def add(set, _item), do: raise_not_set(set)

  @doc """
  Adds `item` and returns the index it was inserted at, or `nil` (and the
  unchanged set) if an item `==` to it is already present.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> {index, set} = Pure.index_add(Pure.from_sorted([10, 30]), 20)
      iex> index
      1
      iex> set
      #Switchboard.SortedSet.Pure<[10, 20, 30]>
      iex> {index, unchanged} = Pure.index_add(set, 20.0)
      iex> {index, unchanged == set}
      {nil, true}
  """
  @spec index_add(t(), item()) :: {non_neg_integer() | nil, t()}
  @impl true
  def index_add(%__MODULE__{size: size, height: height, root: root} = set, item) do
    case insert(root, height, item, 0, size) do
      :exists ->
        {nil, set}

      {:ok, root, rank} ->
        {rank, %{set | size: size + 1, root: root}}

      {:split, left, sep, right, left_size, right_size, rank} ->
        {rank, grow(set, left, sep, right, left_size, right_size)}
    end
  end

  def index_add(set, _item), do: raise_not_set(set)

  @doc """
  Removes the item `==` to `item`, if any.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> set = Pure.from_sorted([1, 2, 3])
      iex> Pure.remove(set, 2.0)
      #Switchboard.SortedSet.Pure<[1, 3]>
      iex> Pure.remove(set, 4)
      #Switchboard.SortedSet.Pure<[1, 2, 3]>
  """
  @spec remove(t(), item()) :: t()
  @impl true
  def remove(%__MODULE__{size: size, height: height, root: root} = set, item) do
    case delete(root, height, item, nil, size) do
      :error -> set
      {:ok, root, _rank} -> shrink(size - 1, height, root)
    end
  end

  def remove(set, _item), do: raise_not_set(set)

  @doc """
  Removes the item `==` to `item` and returns the index it had, or `nil`
  (and the unchanged set) if there is no such item.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> {index, set} = Pure.index_remove(Pure.from_sorted([:a, :b, :c]), :b)
      iex> index
      1
      iex> set
      #Switchboard.SortedSet.Pure<[:a, :c]>
      iex> {index, unchanged} = Pure.index_remove(set, :d)
      iex> {index, unchanged == set}
      {nil, true}
  """
  @spec index_remove(t(), item()) :: {non_neg_integer() | nil, t()}
  @impl true
  def index_remove(%__MODULE__{size: size, height: height, root: root} = set, item) do
    case delete(root, height, item, 0, size) do
      :error -> {nil, set}
      {:ok, root, rank} -> {rank, shrink(size - 1, height, root)}
    end
  end

  def index_remove(set, _item), do: raise_not_set(set)

  @doc """
  Removes the item at `index` and returns it, or `{nil, set}` if `index` is
  out of range. A negative `index` counts from the end (`-1` is the last).

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> set = Pure.from_sorted([:a, :b, :c])
      iex> {item, rest} = Pure.remove_at(set, -1)
      iex> item
      :c
      iex> rest
      #Switchboard.SortedSet.Pure<[:a, :b]>
      iex> {item, unchanged} = Pure.remove_at(set, 3)
      iex> {item, unchanged == set}
      {nil, true}
      iex> Pure.remove_at(set, 1.0)
      ** (ArgumentError) expected an integer index, got: 1.0
  """
  @spec remove_at(t(), index()) :: {item() | nil, t()}
  @impl true
  def remove_at(%__MODULE__{size: size, height: height, root: root} = set, index)
      when is_integer(index) do
    case normalize(index, size) do
      nil ->
        {nil, set}

      index ->
        {item, root} = delete_at(root, height, index, size)
        {item, shrink(size - 1, height, root)}
    end
  end

  def remove_at(set, index), do: raise_bad_arguments(set, index: index)

  @doc """
  Returns an empty set. Present for parity with the native set, which is
  mutable; here it is the same as `new/0`.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> Pure.from_sorted([1, 2]) |> Pure.clear()
      #Switchboard.SortedSet.Pure<[]>
  """
  @spec clear(t()) :: t()
  @impl true
  def clear(%__MODULE__{}), do: %__MODULE__{}
  def clear(set), do: raise_not_set(set)

  @doc """
  Returns `set` itself. Present for parity with the native set, which is
  mutable and needs copying before divergent updates; an immutable value
  needs none.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> set = Pure.from_sorted([1, 2])
      iex> Pure.copy(set) == set
      true
  """
  @spec copy(t()) :: t()
  @impl true
  def copy(%__MODULE__{} = set), do: set
  def copy(set), do: raise_not_set(set)

  ## Queries

  @doc """
  Returns the number of items, in O(1).

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> Pure.from_enumerable([1, 1.0, 2]) |> Pure.size()
      2
      iex> Pure.size(MapSet.new())
      ** (ArgumentError) expected a Switchboard.SortedSet.Pure, got: MapSet.new([])
  """
  @spec size(t()) :: non_neg_integer()
  @impl true
  def size(%__MODULE__{size: size}), do: size
  def size(set), do: raise_not_set(set)

  @doc """
  Returns whether an item `==` to `item` is in the set.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> set = Pure.from_sorted([1, 2])
      iex> Pure.member?(set, 2.0)
      true
      iex> Pure.member?(set, 3)
      false
  """
  @spec member?(t(), item()) :: boolean()
  @impl true
  def member?(%__MODULE__{height: height, root: root}, item), do: member(root, height, item)
  def member?(set, _item), do: raise_not_set(set)

  @doc """
  Returns the index of the item `==` to `item`, or `nil` if there is none.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> set = Pure.from_sorted([1, 2, 3])
      iex> Pure.find_index(set, 3)
      2
      iex> Pure.find_index(set, 1.0)
      0
      iex> Pure.find_index(set, 2.5)
      nil
  """
  @spec find_index(t(), item()) :: non_neg_integer() | nil
  @impl true
  def find_index(%__MODULE__{size: size, height: height, root: root}, item) do
    rank(root, height, item, 0, size)
  end

  def find_index(set, _item), do: raise_not_set(set)

  @doc """
  Returns the index where `item` is, or where it would be inserted: the
  number of items strictly less than `item`.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> set = Pure.from_sorted([10, 20, 30])
      iex> Pure.lower_bound(set, 20)
      1
      iex> Pure.lower_bound(set, 25)
      2
      iex> Pure.lower_bound(set, :atom)
      3
  """
  @spec lower_bound(t(), item()) :: non_neg_integer()
  @impl true
  def lower_bound(%__MODULE__{size: size, height: height, root: root}, item) do
    count_before(root, height, item, false, 0, size)
  end

  def lower_bound(set, _item), do: raise_not_set(set)

  @doc """
  Returns the item at `index`, or `default` if `index` is out of range. A
  negative `index` counts from the end (`-1` is the last item).

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> set = Pure.from_sorted([:a, :b, :c])
      iex> Pure.at(set, 0)
      :a
      iex> Pure.at(set, -1)
      :c
      iex> Pure.at(set, 3)
      nil
      iex> Pure.at(set, 3, :none)
      :none
      iex> Pure.at(set, "0")
      ** (ArgumentError) expected an integer index, got: "0"
  """
  @spec at(t(), index(), default) :: item() | default when default: term()
  @impl true
  def at(set, index, default \\ nil)

  def at(%__MODULE__{size: size, height: height, root: root}, index, default)
      when is_integer(index) do
    case normalize(index, size) do
      nil -> default
      index -> fetch(root, height, index, size)
    end
  end

  def at(set, index, _default), do: raise_bad_arguments(set, index: index)

  @doc """
  Returns up to `amount` items starting at index `start`, in order. The
  result is truncated at the end of the set, and is `[]` past it.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> set = Pure.from_sorted(1..10)
      iex> Pure.slice(set, 2, 3)
      [3, 4, 5]
      iex> Pure.slice(set, 8, 5)
      [9, 10]
      iex> Pure.slice(set, 10, 1)
      []
      iex> Pure.slice(set, -1, 1)
      ** (ArgumentError) expected a non-negative integer index, got: -1
  """
  @spec slice(t(), non_neg_integer(), non_neg_integer()) :: [item()]
  @impl true
  def slice(%__MODULE__{size: size, height: height, root: root}, start, amount)
      when is_integer(start) and start >= 0 and is_integer(amount) and amount >= 0 do
    stop = min(start + amount, size)
    if start < stop, do: collect(root, height, start, stop, [], size), else: []
  end

  def slice(set, start, amount), do: raise_bad_arguments(set, index: start, amount: amount)

  @doc """
  Returns up to `amount` items that come strictly after `item` in term
  order (an item `==` to it excluded), whether or not `item` is in the set.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> set = Pure.from_sorted(1..10)
      iex> Pure.slice_after(set, 3, 2)
      [4, 5]
      iex> Pure.slice_after(set, 9.5, 5)
      [10]
  """
  @spec slice_after(t(), item(), non_neg_integer()) :: [item()]
  @impl true
  def slice_after(%__MODULE__{size: size, height: height, root: root}, item, amount)
      when is_integer(amount) and amount >= 0 do
    start = count_before(root, height, item, true, 0, size)
    stop = min(start + amount, size)
    if start < stop, do: collect(root, height, start, stop, [], size), else: []
  end

  def slice_after(set, _item, amount), do: raise_bad_arguments(set, amount: amount)

  @doc """
  Returns the items between `min` and `max` inclusive (in term order, so
  items `==` to either bound are included), in order.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> set = Pure.from_sorted([1, 2, 3, :a, :b, "x"])
      iex> Pure.range(set, 2.0, :a)
      [2, 3, :a]
      iex> Pure.range(set, 0, 1)
      [1]
      iex> Pure.range(set, :b, 1)
      []
  """
  @spec range(t(), item(), item()) :: [item()]
  @impl true
  def range(%__MODULE__{size: size, height: height, root: root}, min, max) do
    start = count_before(root, height, min, false, 0, size)
    stop = count_before(root, height, max, true, 0, size)
    if start < stop, do: collect(root, height, start, stop, [], size), else: []
  end

  def range(set, _min, _max), do: raise_not_set(set)

  @doc """
  Returns all items in order, in O(n).

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> Pure.from_enumerable([{2}, 1, [], %{}]) |> Pure.to_list()
      [1, {2}, %{}, []]
  """
  @spec to_list(t()) :: [item()]
  @impl true
  def to_list(%__MODULE__{size: 0}), do: []

  def to_list(%__MODULE__{size: size, height: height, root: root}),
    do: collect(root, height, 0, size, [], size)

  def to_list(set), do: raise_not_set(set)

  @doc """
  Returns the number of bytes the set occupies on the process heap,
  including its items. Items shared with other terms are counted once.

  ## Examples

      iex> alias Switchboard.SortedSet.Pure
      iex> bytes = Pure.memory(Pure.from_sorted(1..10_000))
      iex> bytes > 10_000 * :erlang.system_info(:wordsize)
      true
  """
  @spec memory(t()) :: non_neg_integer()
  @impl true
  def memory(%__MODULE__{} = set), do: :erts_debug.size(set) * :erlang.system_info(:wordsize)
  def memory(set), do: raise_not_set(set)

  ## Bulk building

  defp check_ascending!([a | [b | _] = rest]) do
    if a < b, do: check_ascending!(rest), else: Common.not_ascending!(a, b)
  end

  defp check_ascending!(_list), do: :ok

  defp build([]), do: %__MODULE__{}

  defp build(items) do
    size = length(items)

    leaves =
      for {chunk, count} <- chunk_evenly(items, size, @leaf_fill),
          do: {hd(chunk), List.to_tuple(chunk), count}

    {root, height} = build_levels(leaves, 0)
    %__MODULE__{size: size, height: height, root: root}
  end

  # Each entry is {min item, node, item count}; groups them into parents
  # until one node is left.
  defp build_levels([{_min, root, _count}], height), do: {root, height}

  defp build_levels(entries, height) do
    parents =
      for {group, _count} <- chunk_evenly(entries, length(entries), @node_fill) do
        [{min, _, _} | rest] = group
        separators = for {first, _, _} <- rest, do: first
        children = for {_, child, _} <- group, do: child
        sizes = for {_, _, count} <- group, do: count

        {min, {List.to_tuple(separators), List.to_tuple(children), List.to_tuple(sizes)},
         Enum.sum(sizes)}
      end

    build_levels(parents, height + 1)
  end

  # Splits `list` (of `length`) into the fewest chunks of at most `fill`,
  # with sizes differing by at most one, so every chunk is at least half full.
  defp chunk_evenly(list, length, fill) do
    chunks = div(length + fill - 1, fill)
    chunk_evenly(list, chunks, div(length, chunks), rem(length, chunks), [])
  end

  defp chunk_evenly(_list, 0, _base, _extra, acc), do: :lists.reverse(acc)

  defp chunk_evenly(list, chunks, base, extra, acc) do
    count = if extra > 0, do: base + 1, else: base
    {chunk, rest} = :lists.split(count, list)
    chunk_evenly(rest, chunks - 1, base, extra - 1, [{chunk, count} | acc])
  end

  ## Searching
  #
  # Leaves and separator tuples are sorted, so one binary search per level
  # finds the way; only `<` and `==` compare items, as in :gb_sets.

  # The number of elements of tuple[lo..hi) that are < item.
  defp lower(tuple, item, lo, hi) when lo < hi do
    mid = (lo + hi) >>> 1

    if elem(tuple, mid) < item,
      do: lower(tuple, item, mid + 1, hi),
      else: lower(tuple, item, lo, mid)
  end

  defp lower(_tuple, _item, lo, _hi), do: lo

  # The number of elements of tuple[lo..hi) that are <= item. On separators
  # this is the child whose range holds item.
  defp upper(tuple, item, lo, hi) when lo < hi do
    mid = (lo + hi) >>> 1

    if item < elem(tuple, mid),
      do: upper(tuple, item, lo, mid),
      else: upper(tuple, item, mid + 1, hi)
  end

  defp upper(_tuple, _item, lo, _hi), do: lo

  defp member(leaf, 0, item) do
    size = tuple_size(leaf)
    pos = lower(leaf, item, 0, size)
    pos < size and elem(leaf, pos) == item
  end

  defp member({separators, children, _sizes}, height, item) do
    member(elem(children, upper(separators, item, 0, tuple_size(separators))), height - 1, item)
  end

  defp rank(leaf, 0, item, before, _total) do
    size = tuple_size(leaf)
    pos = lower(leaf, item, 0, size)
    if pos < size and elem(leaf, pos) == item, do: before + pos, else: nil
  end

  defp rank({separators, children, sizes}, height, item, before, total) do
    i = upper(separators, item, 0, tuple_size(separators))
    rank(elem(children, i), height - 1, item, before + prefix(sizes, i, total), elem(sizes, i))
  end

  # The number of items < item, or <= item when `inclusive`.
  defp count_before(leaf, 0, item, inclusive, before, _total) do
    size = tuple_size(leaf)

    if inclusive,
      do: before + upper(leaf, item, 0, size),
      else: before + lower(leaf, item, 0, size)
  end

  defp count_before({separators, children, sizes}, height, item, inclusive, before, total) do
    i = upper(separators, item, 0, tuple_size(separators))
    before = before + prefix(sizes, i, total)
    count_before(elem(children, i), height - 1, item, inclusive, before, elem(sizes, i))
  end

  # The number of items under children[0..i). Sums from whichever end is
  # nearer: the node's total is known, so the right end costs no more.
  defp prefix(sizes, i, total) do
    count = tuple_size(sizes)
    if i * 2 <= count, do: sum(sizes, 0, i, 0), else: total - sum(sizes, i, count, 0)
  end

  defp sum(tuple, from, to, acc) when from < to,
    do: sum(tuple, from + 1, to, acc + elem(tuple, from))

  defp sum(_tuple, _from, _to, acc), do: acc

  ## Positions

  # A valid index as 0..size-1 (negative ones count from the end), or nil.
  defp normalize(index, size) when index >= 0 and index < size, do: index
  defp normalize(index, size) when index < 0 and index >= -size, do: index + size
  defp normalize(_index, _size), do: nil

  defp fetch(leaf, 0, index, _total), do: elem(leaf, index)

  defp fetch({_separators, children, sizes}, height, index, total) do
    if index * 2 < total do
      fetch_forward(children, sizes, 0, index, height)
    else
      fetch_backward(children, sizes, tuple_size(sizes) - 1, total - index, height)
    end
  end

  defp fetch_forward(children, sizes, i, index, height) do
    size = elem(sizes, i)

    if index < size,
      do: fetch(elem(children, i), height - 1, index, size),
      else: fetch_forward(children, sizes, i + 1, index - size, height)
  end

  # `remaining` counts the items from the wanted one to the end of the node.
  defp fetch_backward(children, sizes, i, remaining, height) do
    size = elem(sizes, i)

    if remaining <= size,
      do: fetch(elem(children, i), height - 1, size - remaining, size),
      else: fetch_backward(children, sizes, i - 1, remaining - size, height)
  end

  # {child, index within it} for the item at `index` of a node.
  defp locate(sizes, index, total) do
    if index * 2 < total,
      do: locate_forward(sizes, 0, index),
      else: locate_backward(sizes, tuple_size(sizes) - 1, total - index)
  end

  defp locate_forward(sizes, i, index) do
    size = elem(sizes, i)
    if index < size, do: {i, index}, else: locate_forward(sizes, i + 1, index - size)
  end

  defp locate_backward(sizes, i, remaining) do
    size = elem(sizes, i)

    if remaining <= size,
      do: {i, size - remaining},
      else: locate_backward(sizes, i - 1, remaining - size)
  end

  # Prepends the items at positions [start, stop) of a subtree to acc,
  # walking right to left so the list is built without reversing.
  defp collect(leaf, 0, start, stop, acc, _total) do
    if start == 0 and stop == tuple_size(leaf),
      do: Tuple.to_list(leaf) ++ acc,
      else: prepend(leaf, start, stop - 1, acc)
  end

  defp collect({_separators, children, sizes}, height, start, stop, acc, total) do
    collect_children(children, sizes, tuple_size(sizes) - 1, total, start, stop, height - 1, acc)
  end

  # `child_stop` is the position just past child i.
  defp collect_children(_children, _sizes, _i, child_stop, start, _stop, _height, acc)
       when child_stop <= start,
       do: acc

  defp collect_children(children, sizes, i, child_stop, start, stop, height, acc) do
    size = elem(sizes, i)
    child_start = child_stop - size

    acc =
      if child_start < stop do
        from = max(start - child_start, 0)
        to = min(stop, child_stop) - child_start
        collect(elem(children, i), height, from, to, acc, size)
      else
        acc
      end

    collect_children(children, sizes, i - 1, child_start, start, stop, height, acc)
  end

  defp prepend(leaf, first, i, acc) when i >= first,
    do: prepend(leaf, first, i - 1, [elem(leaf, i) | acc])

  defp prepend(_leaf, _first, _i, acc), do: acc

  ## Inserting
  #
  # insert/5 returns :exists, {:ok, node, rank} or, when the node overflowed,
  # {:split, left, separator, right, left_size, right_size, rank}. `rank` is
  # nil unless the caller asked for the index (index_add/2).

  defp insert(leaf, 0, item, rank, _total) do
    size = tuple_size(leaf)
    pos = lower(leaf, item, 0, size)

    if pos < size and elem(leaf, pos) == item do
      :exists
    else
      leaf = :erlang.insert_element(pos + 1, leaf, item)
      rank = rank && rank + pos

      if size < @leaf_max do
        {:ok, leaf, rank}
      else
        half = div(size + 1, 2)
        {left, right} = split_tuple(leaf, half)
        {:split, left, elem(right, 0), right, half, size + 1 - half, rank}
      end
    end
  end

  defp insert({separators, children, sizes}, height, item, rank, total) do
    i = upper(separators, item, 0, tuple_size(separators))
    child_total = elem(sizes, i)
    rank = rank && rank + prefix(sizes, i, total)

    case insert(elem(children, i), height - 1, item, rank, child_total) do
      :exists ->
        :exists

      {:ok, child, rank} ->
        {:ok, {separators, put_elem(children, i, child), put_elem(sizes, i, child_total + 1)},
         rank}

      {:split, left, separator, right, left_size, right_size, rank} ->
        separators = :erlang.insert_element(i + 1, separators, separator)
        children = :erlang.insert_element(i + 2, put_elem(children, i, left), right)
        sizes = :erlang.insert_element(i + 2, put_elem(sizes, i, left_size), right_size)

        if tuple_size(children) <= @node_max,
          do: {:ok, {separators, children, sizes}, rank},
          else: split_node(separators, children, sizes, rank)
    end
  end

  defp split_node(separators, children, sizes, rank) do
    half = div(tuple_size(children), 2)
    {left_children, right_children} = split_tuple(children, half)
    {left_sizes, right_sizes} = split_tuple(sizes, half)

    {left_separators, [separator | right_separators]} =
      :lists.split(half - 1, Tuple.to_list(separators))

    left = {List.to_tuple(left_separators), left_children, left_sizes}
    right = {List.to_tuple(right_separators), right_children, right_sizes}
    left_size = sum(left_sizes, 0, tuple_size(left_sizes), 0)
    right_size = sum(right_sizes, 0, tuple_size(right_sizes), 0)
    {:split, left, separator, right, left_size, right_size, rank}
  end

  defp split_tuple(tuple, count) do
    {left, right} = :lists.split(count, Tuple.to_list(tuple))
    {List.to_tuple(left), List.to_tuple(right)}
  end

  defp grow(set, left, separator, right, left_size, right_size) do
    root = {{separator}, {left, right}, {left_size, right_size}}
    %{set | size: left_size + right_size, height: set.height + 1, root: root}
  end

  ## Deleting
  #
  # delete/5 returns :error or {:ok, node, rank}; a child left under a
  # quarter full is merged with, or evened out against, a sibling.

  defp delete(leaf, 0, item, rank, _total) do
    size = tuple_size(leaf)
    pos = lower(leaf, item, 0, size)

    if pos < size and elem(leaf, pos) == item,
      do: {:ok, :erlang.delete_element(pos + 1, leaf), rank && rank + pos},
      else: :error
  end

  defp delete({separators, children, sizes} = node, height, item, rank, total) do
    i = upper(separators, item, 0, tuple_size(separators))
    child_total = elem(sizes, i)
    rank = rank && rank + prefix(sizes, i, total)

    case delete(elem(children, i), height - 1, item, rank, child_total) do
      :error ->
        :error

      {:ok, child, rank} ->
        {:ok, replace_child(node, i, child, child_total - 1, height - 1), rank}
    end
  end

  defp delete_at(leaf, 0, index, _total),
    do: {elem(leaf, index), :erlang.delete_element(index + 1, leaf)}

  defp delete_at({_separators, children, sizes} = node, height, index, total) do
    {i, index} = locate(sizes, index, total)
    child_total = elem(sizes, i)
    {item, child} = delete_at(elem(children, i), height - 1, index, child_total)
    {item, replace_child(node, i, child, child_total - 1, height - 1)}
  end

  defp replace_child({separators, children, sizes} = node, i, child, child_size, child_height) do
    if underfull?(child, child_height) do
      rebalance(node, i, child, child_size, child_height)
    else
      {separators, put_elem(children, i, child), put_elem(sizes, i, child_size)}
    end
  end

  defp underfull?(leaf, 0), do: tuple_size(leaf) < @leaf_min
  defp underfull?({_separators, children, _sizes}, _height), do: tuple_size(children) < @node_min

  # Every inner node has at least two children, so child i has a sibling.
  defp rebalance({separators, children, sizes}, i, child, child_size, child_height) do
    {j, left, left_size, right, right_size} =
      if i + 1 < tuple_size(children),
        do: {i, child, child_size, elem(children, i + 1), elem(sizes, i + 1)},
        else: {i - 1, elem(children, i - 1), elem(sizes, i - 1), child, child_size}

    case join(left, elem(separators, j), right, child_height) do
      {:one, node} ->
        {:erlang.delete_element(j + 1, separators),
         :erlang.delete_element(j + 2, put_elem(children, j, node)),
         :erlang.delete_element(j + 2, put_elem(sizes, j, left_size + right_size))}

      {:two, new_left, separator, new_right, new_left_size} ->
        {put_elem(separators, j, separator),
         children |> put_elem(j, new_left) |> put_elem(j + 1, new_right),
         sizes
         |> put_elem(j, new_left_size)
         |> put_elem(j + 1, left_size + right_size - new_left_size)}
    end
  end

  # Merges two neighbours into one node if they fit, else splits their
  # contents evenly (so both end at least half full).
  defp join(left, _separator, right, 0) do
    count = tuple_size(left) + tuple_size(right)
    items = Tuple.to_list(left) ++ Tuple.to_list(right)

    if count <= @leaf_max do
      {:one, List.to_tuple(items)}
    else
      half = div(count, 2)
      {left, right} = :lists.split(half, items)
      {:two, List.to_tuple(left), hd(right), List.to_tuple(right), half}
    end
  end

  defp join(
         {left_separators, left_children, left_sizes},
         separator,
         {right_separators, right_children, right_sizes},
         _height
       ) do
    count = tuple_size(left_children) + tuple_size(right_children)
    separators = Tuple.to_list(left_separators) ++ [separator | Tuple.to_list(right_separators)]
    children = Tuple.to_list(left_children) ++ Tuple.to_list(right_children)
    sizes = Tuple.to_list(left_sizes) ++ Tuple.to_list(right_sizes)

    if count <= @node_max do
      {:one, {List.to_tuple(separators), List.to_tuple(children), List.to_tuple(sizes)}}
    else
      half = div(count, 2)
      {left_separators, [separator | right_separators]} = :lists.split(half - 1, separators)
      {left_children, right_children} = :lists.split(half, children)
      {left_sizes, right_sizes} = :lists.split(half, sizes)

      left =
        {List.to_tuple(left_separators), List.to_tuple(left_children), List.to_tuple(left_sizes)}

      right =
        {List.to_tuple(right_separators), List.to_tuple(right_children),
         List.to_tuple(right_sizes)}

      {:two, left, separator, right, Enum.sum(left_sizes)}
    end
  end

  # An inner root left with one child hands over to it.
  defp shrink(size, height, {_separators, {child}, _sizes}) when height > 0,
    do: shrink(size, height - 1, child)

  defp shrink(size, height, root), do: %__MODULE__{size: size, height: height, root: root}

  ## Errors

  @spec raise_not_set(term()) :: no_return()
  defp raise_not_set(term), do: Common.not_a_set!(__MODULE__, term)

  # Raises for the first argument that is wrong (the set first).
  @spec raise_bad_arguments(term(), keyword()) :: no_return()
  defp raise_bad_arguments(%__MODULE__{}, checks), do: Common.bad_integers!(checks)
  defp raise_bad_arguments(term, _checks), do: raise_not_set(term)
end

defimpl Enumerable, for: Switchboard.SortedSet.Pure do
  alias Switchboard.SortedSet.Pure

  def count(set), do: {:ok, Pure.size(set)}

  def member?(set, item), do: {:ok, Pure.member?(set, item)}

  def slice(set) do
    {:ok, Pure.size(set),
     fn
       start, amount, 1 ->
         Pure.slice(set, start, amount)

       start, amount, step ->
         set |> Pure.slice(start, (amount - 1) * step + 1) |> Enum.take_every(step)
     end}
  end

  # Walks the leaves left to right with an explicit stack of
  # {children, next child, child height} frames, so it can suspend.
  def reduce(%Pure{height: height, root: root}, acc, fun), do: descend(root, height, [], acc, fun)

  defp descend(leaf, 0, stack, acc, fun), do: reduce_leaf(leaf, 0, stack, acc, fun)

  defp descend({_separators, children, _sizes}, height, stack, acc, fun) do
    descend(elem(children, 0), height - 1, [{children, 1, height - 1} | stack], acc, fun)
  end

  defp reduce_leaf(_leaf, _i, _stack, {:halt, acc}, _fun), do: {:halted, acc}

  defp reduce_leaf(leaf, i, stack, {:suspend, acc}, fun),
    do: {:suspended, acc, &reduce_leaf(leaf, i, stack, &1, fun)}

  defp reduce_leaf(leaf, i, stack, {:cont, acc}, fun) when i < tuple_size(leaf),
    do: reduce_leaf(leaf, i + 1, stack, fun.(elem(leaf, i), acc), fun)

  defp reduce_leaf(_leaf, _i, stack, acc, fun), do: next_leaf(stack, acc, fun)

  defp next_leaf([], {:cont, acc}, _fun), do: {:done, acc}

  defp next_leaf([{children, i, height} | stack], acc, fun) when i < tuple_size(children),
    do: descend(elem(children, i), height, [{children, i + 1, height} | stack], acc, fun)

  defp next_leaf([_done | stack], acc, fun), do: next_leaf(stack, acc, fun)
end

defimpl Collectable, for: Switchboard.SortedSet.Pure do
  alias Switchboard.SortedSet.Pure

  # Collects the new items first: a batch that is large next to the set is
  # merged in one O(n + m log m) pass instead of m separate adds.
  def into(set) do
    collector = fn
      acc, {:cont, item} ->
        [item | acc]

      acc, :done ->
        items = :lists.reverse(acc)

        if length(items) * 8 < Pure.size(set) do
          Enum.reduce(items, set, &Pure.add(&2, &1))
        else
          # umerge keeps the element from its first list among equal ones,
          # and usort keeps the first occurrence: the set's items win, then
          # the earliest new one.
          Pure.from_sorted(:lists.umerge(Pure.to_list(set), :lists.usort(items)))
        end

      _acc, :halt ->
        :ok
    end

    {[], collector}
  end
end

defimpl Inspect, for: Switchboard.SortedSet.Pure do
  def inspect(set, opts),
    do: Switchboard.SortedSet.Common.inspect_set(Switchboard.SortedSet.Pure, set, opts)
end
