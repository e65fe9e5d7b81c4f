defmodule Switchboard.MemberList.Pure do
  @moduledoc """
  The lazy member list of a guild in pure Elixir: the twin of
  `Switchboard.MemberList`, with the same API and identical updates.

  Members are kept in a `Switchboard.SortedSet.Pure` (an order-statistic
  B+ tree) under the sort key `{class, -position, role_id, name, user_id}`,
  so a member's index is its rank plus the headers before it, and the item
  at an index is one descent. Groups are few and kept as an ordered list of
  `{group_key, count}`, from which header positions are prefix sums.

  Sessions are grouped by their set of ranges; a change computes the ops of
  each distinct range once, then the op list of each distinct range set,
  and sessions whose op lists are equal share an entry. See
  `Switchboard.MemberList.Behaviour` for the list's order and the ops.

  ## Examples

      iex> alias Switchboard.MemberList.Pure
      iex> list = Pure.new()
      iex> {[], list} = Pure.put(list, %{id: 1, name: "ada", status: :online})
      iex> {[{[:s1], [{:sync, [0, 99], items}]}], list} = Pure.subscribe(list, :s1, [[0, 99]])
      iex> items
      [{:group, "online", 1}, {:member, 1}]
      iex> {updates, _list} = Pure.put(list, %{id: 2, name: "bob", status: :online})
      iex> updates
      [{[:s1], [{:update, 0, {:group, "online", 2}}, {:insert, 2, {:member, 2}}]}]
  """

  @behaviour Switchboard.MemberList.Behaviour

  alias Switchboard.MemberList.Behaviour, as: Contract
  alias Switchboard.SortedSet.Pure, as: Tree

  defstruct hidden: false,
            tree: %Tree{},
            members: %{},
            groups: [],
            online: 0,
            sessions: %{},
            range_sets: %{},
            ranges: %{},
            next_seq: 0

  @opaque t :: %__MODULE__{}

  # members: user_id => {sort_key, status}
  # groups: [{group_key, count}] in list order, listed groups with members only
  # sessions: session_id => {seq, ranges}; range_sets: ranges => :gb_sets of {seq, session_id}
  # ranges: {first, last} => number of range sets holding it

  @impl true
  @spec new(keyword()) :: t()
  def new(opts \\ []) do
    %__MODULE__{hidden: Contract.offline_option!(opts) == :hidden}
  end

  @impl true
  def put(%__MODULE__{} = list, member) do
    {id, name, status, hoist} = Contract.member!(member)
    key = sort_key(id, name, status, hoist)

    case Map.fetch(list.members, id) do
      {:ok, {^key, ^status}} ->
        {[], list}

      {:ok, {old_key, old_status}} ->
        old = if listed?(list, old_status), do: old_key
        new = if listed?(list, status), do: key
        online = list.online - online(old_status) + online(status)
        list = %{list | members: Map.put(list.members, id, {key, status}), online: online}
        redraw = old_status != status or elem(old_key, 3) != name
        change(list, id, old, new, redraw)

      :error ->
        new = if listed?(list, status), do: key
        online = list.online + online(status)
        list = %{list | members: Map.put(list.members, id, {key, status}), online: online}
        change(list, id, nil, new, false)
    end
  end

  def put(list, _member), do: raise_not_a_list(list)

  @impl true
  def delete(%__MODULE__{} = list, id) do
    case Map.pop(list.members, id) do
      {nil, _} ->
        {[], list}

      {{key, status}, members} ->
        old = if listed?(list, status), do: key
        list = %{list | members: members, online: list.online - online(status)}
        change(list, id, old, nil, false)
    end
  end

  def delete(list, _id), do: raise_not_a_list(list)

  @impl true
  def subscribe(%__MODULE__{} = list, session, ranges) do
    ranges = Contract.ranges!(ranges)

    {seq, old} =
      case Map.fetch(list.sessions, session) do
        {:ok, {seq, old}} -> {seq, old}
        :error -> {list.next_seq, []}
      end

    if ranges == old do
      {[], list}
    else
      list = list |> leave_range_set(session, seq, old) |> join_range_set(session, seq, ranges)
      layout = layout(list.groups)
      invalidates = for {f, l} <- old -- ranges, do: {:invalidate, [f, l]}

      syncs =
        for {f, l} <- ranges -- old, do: {:sync, [f, l], items_between(list.tree, layout, f, l)}

      case invalidates ++ syncs do
        [] -> {[], list}
        ops -> {[{[session], ops}], list}
      end
    end
  end

  def subscribe(list, _session, _ranges), do: raise_not_a_list(list)

  @impl true
  def unsubscribe(%__MODULE__{} = list, session) do
    case Map.fetch(list.sessions, session) do
      {:ok, {seq, ranges}} -> {[], leave_range_set(list, session, seq, ranges)}
      :error -> {[], list}
    end
  end

  def unsubscribe(list, _session), do: raise_not_a_list(list)

  @impl true
  def items(%__MODULE__{tree: tree, groups: groups}) do
    layout = layout(groups)
    items_between(tree, layout, 0, layout_size(layout) - 1)
  end

  def items(list), do: raise_not_a_list(list)

  @impl true
  def size(%__MODULE__{groups: groups}),
    do: Enum.reduce(groups, 0, fn {_, c}, acc -> acc + c + 1 end)

  def size(list), do: raise_not_a_list(list)

  @impl true
  def counts(%__MODULE__{} = list) do
    %{
      member_count: map_size(list.members),
      online_count: list.online,
      groups: for({group, count} <- list.groups, do: {group_id(group), count})
    }
  end

  def counts(list), do: raise_not_a_list(list)

  @impl true
  def member_index(%__MODULE__{} = list, id) do
    case Map.fetch(list.members, id) do
      {:ok, {key, status}} ->
        if listed?(list, status), do: index_of(list.tree, layout(list.groups), key)

      :error ->
        nil
    end
  end

  def member_index(list, _id), do: raise_not_a_list(list)

  ## Keys and groups

  defp sort_key(id, name, :offline, _hoist), do: {2, 0, 0, name, id}
  defp sort_key(id, name, _status, nil), do: {1, 0, 0, name, id}
  defp sort_key(id, name, _status, {position, role}), do: {0, -position, role, name, id}

  defp group_of({class, position, role, _name, _id}), do: {class, position, role}

  defp group_id({0, _, role}), do: role
  defp group_id({1, _, _}), do: "online"
  defp group_id({2, _, _}), do: "offline"

  defp listed?(%__MODULE__{hidden: true}, :offline), do: false
  defp listed?(_list, _status), do: true

  defp online(:offline), do: 0
  defp online(_status), do: 1

  ## Layout: [{group_key, shown_count, members_in_tree}] in list order. During
  ## a change a header may briefly show a count other than its members'.

  defp layout(groups), do: for({group, count} <- groups, do: {group, count, count})

  defp layout_size(layout), do: Enum.reduce(layout, 0, fn {_, _, m}, acc -> acc + m + 1 end)

  defp header_index(layout, group, acc \\ 0)
  defp header_index([{group, _, _} | _], group, acc), do: acc
  defp header_index([{_, _, m} | rest], group, acc), do: header_index(rest, group, acc + m + 1)

  defp members_of(layout, group) do
    case List.keyfind(layout, group, 0) do
      {_, _, m} -> m
      nil -> 0
    end
  end

  defp adjust(layout, group, shown, members) do
    Enum.map(layout, fn
      {^group, s, m} -> {group, s + shown, m + members}
      entry -> entry
    end)
  end

  defp add_group([{other, _, _} = entry | rest], group) when other < group,
    do: [entry | add_group(rest, group)]

  defp add_group(rest, group), do: [{group, 1, 0} | rest]

  defp index_of(tree, layout, key) do
    group = group_of(key)
    headers = Enum.count(layout, fn {g, _, _} -> g <= group end)
    Tree.find_index(tree, key) + headers
  end

  defp item_at(tree, layout, index), do: item_at(tree, layout, index, 0)

  defp item_at(tree, [{group, shown, m} | rest], index, base) do
    cond do
      index == 0 -> {:group, group_id(group), shown}
      index <= m -> {:member, elem(Tree.at(tree, base + index - 1), 4)}
      true -> item_at(tree, rest, index - m - 1, base + m)
    end
  end

  # Items at indexes first..last (clipped to the list).
  defp items_between(tree, layout, first, last),
    do: items_between(tree, layout, first, last, 0, 0, [])

  defp items_between(_tree, [], _first, _last, _start, _base, acc),
    do: Enum.concat(Enum.reverse(acc))

  defp items_between(_tree, _layout, _first, last, start, _base, acc) when start > last,
    do: Enum.concat(Enum.reverse(acc))

  defp items_between(tree, [{group, shown, m} | rest], first, last, start, base, acc) do
    next = start + m + 1

    if next <= first do
      items_between(tree, rest, first, last, next, base + m, acc)
    else
      header = if first <= start, do: [{:group, group_id(group), shown}], else: []
      low = max(first, start + 1)
      high = min(last, start + m)

      members =
        if high >= low,
          do:
            for(
              key <- Tree.slice(tree, base + low - start - 1, high - low + 1),
              do: {:member, elem(key, 4)}
            ),
          else: []

      items_between(tree, rest, first, last, next, base + m, [header ++ members | acc])
    end
  end

  ## A change: up to four steps, each {primitive, size_before, tree_after, layout_after}.

  defp change(list, _id, nil, nil, _redraw), do: {[], list}

  defp change(list, id, old, new, redraw) do
    layout0 = layout(list.groups)
    size0 = layout_size(layout0)

    {steps, tree, layout, marks} =
      if old != nil and new != nil and group_of(old) == group_of(new) do
        move_within_group(list.tree, layout0, size0, id, old, new)
      else
        {steps, tree, layout, marks} = remove_steps(list.tree, layout0, size0, old)
        insert_steps(steps, tree, layout, marks, id, new)
      end

    # The member's entry before and after (a member back where it was is no change).
    a = if old, do: index_of(list.tree, layout0, old)
    b = if new, do: index_of(tree, layout, new)
    marks = final_marks(marks, layout, if(old && new, do: {a, b}), redraw)
    groups = for {group, count, count} <- layout, do: {group, count}
    list = %{list | tree: tree, groups: groups}
    {updates(list, Enum.reverse(steps), marks, size0, layout_size(layout)), list}
  end

  defp move_within_group(tree0, layout, size, id, old, new) do
    group = group_of(old)
    a = index_of(tree0, layout, old)
    tree1 = Tree.remove(tree0, old)
    tree = Tree.add(tree1, new)
    b = index_of(tree, layout, new)

    if a == b do
      {[{{:update, a, {:member, id}}, size, tree, layout}], tree, layout, {[], [], [a], []}}
    else
      layout1 = adjust(layout, group, 0, -1)

      steps = [
        {{:insert, b, {:member, id}}, size - 1, tree, layout},
        {{:delete, a}, size, tree1, layout1}
      ]

      {steps, tree, layout, {[a], [b], [], []}}
    end
  end

  # marks: {deleted (old indexes), inserted (new indexes), updated (new indexes),
  # groups whose header was updated (their final index is looked up at the end)}
  defp remove_steps(tree, layout, _size, nil), do: {[], tree, layout, {[], [], [], []}}

  defp remove_steps(tree0, layout0, size0, old) do
    group = group_of(old)
    count = members_of(layout0, group)
    a = index_of(tree0, layout0, old)
    tree1 = Tree.remove(tree0, old)
    layout1 = adjust(layout0, group, 0, -1)
    step1 = {{:delete, a}, size0, tree1, layout1}
    header = header_index(layout1, group)

    if count == 1 do
      layout2 = List.keydelete(layout1, group, 0)
      step2 = {{:delete, header}, size0 - 1, tree1, layout2}
      {[step2, step1], tree1, layout2, {[a, header], [], [], []}}
    else
      layout2 = adjust(layout1, group, -1, 0)
      step2 = {{:update, header, {:group, group_id(group), count - 1}}, size0 - 1, tree1, layout2}
      {[step2, step1], tree1, layout2, {[a], [], [], [group]}}
    end
  end

  defp insert_steps(steps, tree, layout, marks, _id, nil), do: {steps, tree, layout, marks}

  defp insert_steps(steps, tree2, layout2, {deleted, inserted, updated, groups}, id, new) do
    group = group_of(new)
    count = members_of(layout2, group)
    size2 = layout_size(layout2)

    {step3, layout3, marks} =
      if count == 0 do
        layout3 = add_group(layout2, group)
        header = header_index(layout3, group)
        step = {{:insert, header, {:group, group_id(group), 1}}, size2, tree2, layout3}
        {step, layout3, {deleted, [header | inserted], updated, groups}}
      else
        layout3 = adjust(layout2, group, 1, 0)
        header = header_index(layout3, group)
        step = {{:update, header, {:group, group_id(group), count + 1}}, size2, tree2, layout3}
        {step, layout3, {deleted, inserted, [header | updated], groups}}
      end

    tree4 = Tree.add(tree2, new)
    layout4 = adjust(layout3, group, 0, 1)
    b = index_of(tree4, layout4, new)
    step4 = {{:insert, b, {:member, id}}, layout_size(layout3), tree4, layout4}
    {deleted, inserted, updated, groups} = marks
    {[step4, step3 | steps], tree4, layout4, {deleted, [b | inserted], updated, groups}}
  end

  defp final_marks({deleted, inserted, updated, groups}, layout, member, redraw) do
    updated = Enum.map(groups, &header_index(layout, &1)) ++ updated
    updated = if redraw and member != nil, do: [elem(member, 1) | updated], else: updated
    {deleted, inserted, updated, member}
  end

  ## Updates

  defp updates(list, steps, marks, size0, size) do
    per_range =
      for {{f, l} = range, _} <- list.ranges,
          changed?(marks, f, l, size0, size),
          ops = Enum.map(steps, &range_ops(&1, f, l)),
          Enum.any?(ops, &(&1 != [])),
          into: %{},
          do: {range, ops}

    if map_size(per_range) == 0 do
      []
    else
      list.range_sets
      |> Enum.reduce(%{}, fn {ranges, sessions}, acc ->
        case for(range <- ranges, ops = Map.get(per_range, range), do: ops) do
          [] ->
            acc

          changed ->
            ops = changed |> Enum.zip_with(&Enum.concat/1) |> Enum.concat()
            Map.update(acc, ops, [:gb_sets.to_list(sessions)], &[:gb_sets.to_list(sessions) | &1])
        end
      end)
      |> Enum.map(fn {ops, session_lists} ->
        {Enum.reduce(session_lists, &:lists.merge/2), ops}
      end)
      |> Enum.sort_by(fn {[{seq, _} | _], _} -> seq end)
      |> Enum.map(fn {sessions, ops} -> {for({_, s} <- sessions, do: s), ops} end)
    end
  end

  # Whether the range [f, l] shows anything different after the change,
  # exactly: an item differs at p when one side has no item there, when p is
  # a removed or added position (unless the member left and came back to
  # p), or when a different number of items were removed before p than
  # added before it. Those counts only change after a removed or added
  # position, so checking f, each such position and the one after it, and
  # the shorter list's end is enough.
  defp changed?({deleted, inserted, updated, member}, f, l, size0, size) do
    last = min(l, max(size0, size) - 1)

    Enum.any?(updated, &(&1 >= f and &1 <= l)) or
      (last >= f and
         Enum.any?(
           [f, min(size0, size) | Enum.flat_map(deleted ++ inserted, &[&1, &1 + 1])],
           &(&1 >= f and &1 <= last and differs?(&1, deleted, inserted, member, size0, size))
         ))
  end

  defp differs?(p, _deleted, _inserted, _member, size0, size) when p >= size0 or p >= size,
    do: true

  defp differs?(p, deleted, inserted, member, _size0, _size) do
    case {p in deleted, p in inserted} do
      {true, true} -> member != {p, p}
      {false, false} -> Enum.count(deleted, &(&1 < p)) != Enum.count(inserted, &(&1 < p))
      _ -> true
    end
  end

  # The ops that keep the window [f, l] equal to the list across one
  # primitive, without shifting slots after l while the list goes on past l.
  defp range_ops({{:delete, i}, n, tree, layout}, f, l) do
    cond do
      i > l or n <= f -> []
      n - 1 > l -> delete_then_insert(max(i, f), l, item_at(tree, layout, l))
      true -> [{:delete, max(i, f)}]
    end
  end

  defp range_ops({{:insert, i, item}, n, tree, layout}, f, l) do
    cond do
      i > l -> []
      i >= f and n > l -> remove_last_then_insert(l, i, item)
      i >= f -> [{:insert, i, item}]
      n < f -> []
      n > l -> remove_last_then_insert(l, f, item_at(tree, layout, f))
      true -> [{:insert, f, item_at(tree, layout, f)}]
    end
  end

  defp range_ops({{:update, i, item}, _n, _tree, _layout}, f, l) do
    if i >= f and i <= l, do: [{:update, i, item}], else: []
  end

  defp delete_then_insert(index, index, item), do: [{:update, index, item}]
  defp delete_then_insert(index, last, item), do: [{:delete, index}, {:insert, last, item}]

  defp remove_last_then_insert(last, last, item), do: [{:update, last, item}]
  defp remove_last_then_insert(last, index, item), do: [{:delete, last}, {:insert, index, item}]

  ## Sessions

  defp leave_range_set(list, _session, _seq, []), do: list

  defp leave_range_set(list, session, seq, ranges) do
    sessions = :gb_sets.delete({seq, session}, Map.fetch!(list.range_sets, ranges))

    {range_sets, dropped} =
      if :gb_sets.is_empty(sessions),
        do: {Map.delete(list.range_sets, ranges), ranges},
        else: {Map.put(list.range_sets, ranges, sessions), []}

    counts =
      Enum.reduce(dropped, list.ranges, fn range, counts ->
        case Map.fetch!(counts, range) do
          1 -> Map.delete(counts, range)
          n -> Map.put(counts, range, n - 1)
        end
      end)

    %{list | range_sets: range_sets, ranges: counts, sessions: Map.delete(list.sessions, session)}
  end

  defp join_range_set(list, _session, _seq, []), do: list

  defp join_range_set(list, session, seq, ranges) do
    {range_sets, added} =
      case Map.fetch(list.range_sets, ranges) do
        {:ok, sessions} ->
          {Map.put(list.range_sets, ranges, :gb_sets.add({seq, session}, sessions)), []}

        :error ->
          {Map.put(list.range_sets, ranges, :gb_sets.singleton({seq, session})), ranges}
      end

    counts =
      Enum.reduce(added, list.ranges, fn range, counts ->
        Map.update(counts, range, 1, &(&1 + 1))
      end)

    next_seq = if seq == list.next_seq, do: seq + 1, else: list.next_seq

    %{
      list
      | range_sets: range_sets,
        ranges: counts,
        sessions: Map.put(list.sessions, session, {seq, ranges}),
        next_seq: next_seq
    }
  end

  defp raise_not_a_list(list) do
    raise ArgumentError, "expected a Switchboard.MemberList.Pure, got: #{inspect(list)}"
  end
end
