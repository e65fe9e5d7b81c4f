defmodule Switchboard.MemberListModel do
  @moduledoc false
  # The judge of both member lists: a naive list (members sorted by the rules,
  # written independently of either implementation) and a model client per
  # session that applies the ops it receives to a list of known-or-unknown
  # slots, exactly as a Discord client would.
  #
  #     state = MemberListModel.new([Pure, MemberList], offline: :listed)
  #     state = MemberListModel.step!(state, {:put, member})
  #
  # `step!` runs one call on every implementation, asserts that all return the
  # same updates and items, that the items are the naive list's, and that
  # every client's subscribed slots equal the list afterwards.

  import ExUnit.Assertions

  defstruct impls: [],
            lists: [],
            hidden: false,
            members: %{},
            clients: %{},
            ranges: %{},
            order: %{},
            next: 0

  def new(impls, opts \\ []) do
    %__MODULE__{
      impls: impls,
      lists: Enum.map(impls, & &1.new(opts)),
      hidden: Keyword.get(opts, :offline, :listed) == :hidden
    }
  end

  ## The naive list

  def expected_items(%__MODULE__{members: members, hidden: hidden}) do
    members
    |> Map.values()
    |> Enum.reject(&(hidden and &1.status == :offline))
    |> Enum.group_by(&group_of/1)
    |> Enum.sort(fn {a, _}, {b, _} -> group_before?(a, b) end)
    |> Enum.flat_map(fn {group, members} ->
      sorted = Enum.sort(members, fn x, y -> {x.name, x.id} <= {y.name, y.id} end)
      [{:group, group_id(group), length(members)} | Enum.map(sorted, &{:member, &1.id})]
    end)
  end

  defp group_of(%{status: :offline}), do: :offline
  defp group_of(member), do: Map.get(member, :hoist) || :online

  defp group_id({_position, role}), do: role
  defp group_id(:online), do: "online"
  defp group_id(:offline), do: "offline"

  defp group_before?({p, r}, {q, s}), do: p > q or (p == q and r <= s)
  defp group_before?({_, _}, _), do: true
  defp group_before?(:online, other), do: other in [:online, :offline]
  defp group_before?(:offline, other), do: other == :offline

  ## Client slots: a list where :unknown marks a slot the client does not know.

  def apply_op(slots, {:sync, [first, last], items}) do
    known = Enum.with_index(items, first)
    slots = pad(slots, last + 1)

    Enum.reduce(first..last, slots, fn index, slots ->
      value =
        case List.keyfind(known, index, 1) do
          {item, _} -> item
          nil -> :unknown
        end

      List.replace_at(slots, index, value)
    end)
  end

  def apply_op(slots, {:insert, index, item}),
    do: slots |> pad(index) |> List.insert_at(index, item)

  def apply_op(slots, {:delete, index}), do: slots |> pad(index + 1) |> List.delete_at(index)

  def apply_op(slots, {:update, index, item}),
    do: slots |> pad(index + 1) |> List.replace_at(index, item)

  def apply_op(slots, {:invalidate, [first, last]}) do
    slots = pad(slots, last + 1)
    Enum.reduce(first..last, slots, &List.replace_at(&2, &1, :unknown))
  end

  defp pad(slots, length) when length(slots) >= length, do: slots
  defp pad(slots, length), do: slots ++ List.duplicate(:unknown, length - length(slots))

  defp window(items, first, last) do
    for index <- first..last, do: Enum.at(items, index, :unknown)
  end

  ## Steps

  def step!(%__MODULE__{} = state, command) do
    results =
      Enum.map(Enum.zip(state.impls, state.lists), fn {impl, list} ->
        call(impl, list, command)
      end)

    [{updates, _} | _] = results

    for {{other, _}, impl} <- Enum.zip(results, state.impls) do
      assert other == updates, "#{inspect(impl)} returned other updates for #{inspect(command)}"
    end

    lists = Enum.map(results, &elem(&1, 1))
    before_items = expected_items(state)
    {state, redraw} = model_call(state, command)
    items = expected_items(state)

    for {impl, list} <- Enum.zip(state.impls, lists) do
      assert impl.items(list) == items, "#{inspect(impl)} items after #{inspect(command)}"
      assert impl.size(list) == length(items)
    end

    check_updates!(state, command, updates, before_items, items, redraw)
    clients = apply_updates(state.clients, updates)

    for {session, ranges} <- state.ranges, {first, last} <- ranges do
      slots = Map.get(clients, session, [])

      assert window(pad(slots, last + 1), first, last) == window(items, first, last),
             "session #{inspect(session)} range #{first}..#{last} after #{inspect(command)}:\n" <>
               "updates #{inspect(updates)}"
    end

    %{state | lists: lists, clients: clients}
  end

  defp call(impl, list, {:put, member}), do: impl.put(list, member)
  defp call(impl, list, {:delete, id}), do: impl.delete(list, id)
  defp call(impl, list, {:subscribe, session, ranges}), do: impl.subscribe(list, session, ranges)
  defp call(impl, list, {:unsubscribe, session}), do: impl.unsubscribe(list, session)

  # The model's own state after the call, and the member to redraw in place
  # (one whose name or status changed).
  defp model_call(state, {:put, member}) do
    old = Map.get(state.members, member.id)
    redraw = if old && (old.name != member.name or old.status != member.status), do: member.id
    {%{state | members: Map.put(state.members, member.id, member)}, redraw}
  end

  defp model_call(state, {:delete, id}),
    do: {%{state | members: Map.delete(state.members, id)}, nil}

  defp model_call(state, {:subscribe, session, []}),
    do: model_call(state, {:unsubscribe, session})

  defp model_call(state, {:subscribe, session, ranges}) do
    ranges = ranges |> Enum.map(fn [f, l] -> {f, l} end) |> Enum.sort()

    state =
      if Map.has_key?(state.order, session),
        do: state,
        else: %{state | order: Map.put(state.order, session, state.next), next: state.next + 1}

    {%{state | ranges: Map.put(state.ranges, session, ranges)}, nil}
  end

  defp model_call(state, {:unsubscribe, session}) do
    {%{
       state
       | ranges: Map.delete(state.ranges, session),
         clients: Map.delete(state.clients, session),
         order: Map.delete(state.order, session)
     }, nil}
  end

  defp apply_updates(clients, updates) do
    Enum.reduce(updates, clients, fn {sessions, ops}, clients ->
      Enum.reduce(sessions, clients, fn session, clients ->
        slots = Enum.reduce(ops, Map.get(clients, session, []), &apply_op(&2, &1))
        Map.put(clients, session, slots)
      end)
    end)
  end

  defp check_updates!(state, command, updates, before_items, items, redraw) do
    sessions = Enum.flat_map(updates, &elem(&1, 0))
    assert length(sessions) == length(Enum.uniq(sessions)), "a session in two entries"
    all_ops = Enum.map(updates, &elem(&1, 1))
    assert length(all_ops) == length(Enum.uniq(all_ops)), "two entries with the same ops"
    assert Enum.all?(all_ops, &(&1 != [])), "an entry without ops"
    # Entries by their first session, sessions in the order they subscribed.
    seqs =
      Enum.map(updates, fn {sessions, _} -> Enum.map(sessions, &Map.get(state.order, &1)) end)

    assert Enum.all?(seqs, &(&1 == Enum.sort(&1))), "sessions out of order: #{inspect(updates)}"
    assert Enum.map(seqs, &hd/1) == Enum.sort(Enum.map(seqs, &hd/1)), "entries out of order"

    case command do
      {:subscribe, session, _} ->
        assert sessions in [[], [session]]

      {:unsubscribe, _} ->
        assert updates == []

      _change ->
        for {sessions, ops} <- updates, session <- sessions do
          ranges = Map.fetch!(state.ranges, session)
          assert length(ops) <= 8 * length(ranges), "more than 8 ops per range: #{inspect(ops)}"

          refute Enum.any?(ops, &(elem(&1, 0) in [:sync, :invalidate])),
                 "a re-sync: #{inspect(ops)}"
        end

        expected =
          for {session, ranges} <- state.ranges,
              Enum.any?(ranges, fn {f, l} ->
                window(before_items, f, l) != window(items, f, l) or
                  (redraw != nil and {:member, redraw} in window(items, f, l))
              end),
              do: session

        assert Enum.sort(sessions) == Enum.sort(expected),
               "sessions told #{inspect(sessions)}, expected #{inspect(expected)} for #{inspect(command)}"
    end
  end
end
