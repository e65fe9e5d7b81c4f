defmodule Switchboard.MemberList do
  @moduledoc """
  The lazy member list of a guild, held natively, and the
  `GUILD_MEMBER_LIST_UPDATE` ops every subscribed session must receive.

  Each change (`put/2`, `delete/2`) returns `{updates, list}`: the ops of
  every distinct subscribed range are computed once, each distinct op list
  is built once, and sessions that receive the same ops share one entry.
  `Switchboard.MemberList.Behaviour` describes the list's order, the ops
  and the guarantees; `Switchboard.MemberList.Pure` is the pure-Elixir twin,
  returning identical updates for the same calls.

  The list is a native resource, changed in place and returned (like
  `Switchboard.SortedSet`): keep using the list each call returns. A change
  costs O(log n) plus the ops it returns, which grow with the subscribed
  ranges it shifts: it counts that work first (in O(log n)) and runs on a
  dirty scheduler when it would hold a normal one for more than about
  0.4 ms. A subscribe (at most five syncs of 100 items) runs on a normal
  scheduler; `items/1` of a large list runs on a dirty one, and a large list
  is freed off the schedulers.

  ## Examples

      iex> alias Switchboard.MemberList
      iex> list = MemberList.new()
      iex> {[], list} = MemberList.put(list, %{id: 1, name: "ada", status: :online})
      iex> {[{[:s1], [{:sync, [0, 99], items}]}], list} = MemberList.subscribe(list, :s1, [[0, 99]])
      iex> items
      [{:group, "online", 1}, {:member, 1}]
      iex> {updates, _list} = MemberList.put(list, %{id: 2, name: "bob", status: :idle})
      iex> updates
      [{[:s1], [{:update, 0, {:group, "online", 2}}, {:insert, 2, {:member, 2}}]}]

      iex> Switchboard.MemberList.subscribe(Switchboard.MemberList.new(), :s1, [[0, 100]])
      ** (ArgumentError) expected ranges to be a list of at most 5 non-overlapping [first, last] with 0 <= first <= last and at most 100 items each, got: [[0, 100]]
  """

  @behaviour Switchboard.MemberList.Behaviour

  alias Switchboard.MemberList.Behaviour, as: Contract
  alias Switchboard.NIF

  @enforce_keys [:ref]
  defstruct [:ref]

  @opaque t :: %__MODULE__{ref: reference()}

  @status_codes %{online: 0, idle: 1, dnd: 2, offline: 3}

  @doc """
  Creates an empty list.

  ## Options

    * `:offline` - `:listed` (default) lists offline members in an
      `"offline"` group; `:hidden` leaves them out (they still count in
      `member_count`), as Discord does for large guilds.
  """
  @impl true
  @spec new(keyword()) :: t()
  def new(opts \\ []) do
    %__MODULE__{ref: NIF.member_list_new(Contract.offline_option!(opts) == :hidden)}
  end

  @doc "Adds a member, or applies a change of its name, status or hoist; returns the updates."
  @impl true
  def put(%__MODULE__{ref: ref} = list, member) do
    {id, name, status, hoist} = Contract.member!(member)

    updates =
      case {status, hoist} do
        {:offline, _} ->
          NIF.member_list_put(ref, id, name, 3, 2, nil, "offline")

        {_, nil} ->
          NIF.member_list_put(ref, id, name, Map.fetch!(@status_codes, status), 1, nil, "online")

        {_, {position, role}} ->
          code = Map.fetch!(@status_codes, status)
          NIF.member_list_put(ref, id, name, code, 0, {-position, role}, role)
      end

    {updates, list}
  end

  def put(list, _member), do: raise_not_a_list(list)

  @doc "Removes a member and returns the updates; `{[], list}` when it is absent."
  @impl true
  def delete(%__MODULE__{ref: ref} = list, id), do: {NIF.member_list_delete(ref, id), list}
  def delete(list, _id), do: raise_not_a_list(list)

  @doc """
  Replaces a session's ranges; the updates hold an `:invalidate` for each
  dropped range and a `:sync` for each new one, for that session only.
  Raises `ArgumentError` unless `ranges` is a list of at most 5
  non-overlapping `[first, last]` of at most 100 items each.
  """
  @impl true
  def subscribe(%__MODULE__{ref: ref} = list, session, ranges) do
    {NIF.member_list_subscribe(ref, session, Contract.ranges!(ranges)), list}
  end

  def subscribe(list, _session, _ranges), do: raise_not_a_list(list)

  @doc "Forgets a session's ranges; it is told nothing."
  @impl true
  def unsubscribe(%__MODULE__{ref: ref} = list, session) do
    NIF.member_list_unsubscribe(ref, session)
    {[], list}
  end

  def unsubscribe(list, _session), do: raise_not_a_list(list)

  @doc "Every item of the list, in order."
  @impl true
  def items(%__MODULE__{ref: ref}), do: NIF.member_list_items(ref)
  def items(list), do: raise_not_a_list(list)

  @doc "The number of items (headers and members)."
  @impl true
  def size(%__MODULE__{ref: ref}), do: NIF.member_list_size(ref)
  def size(list), do: raise_not_a_list(list)

  @doc "`%{member_count: m, online_count: o, groups: [{group_id, count}]}`."
  @impl true
  def counts(%__MODULE__{ref: ref}), do: NIF.member_list_counts(ref)
  def counts(list), do: raise_not_a_list(list)

  @doc "The index of the member's entry, or `nil` (absent, or offline and hidden)."
  @impl true
  def member_index(%__MODULE__{ref: ref}, id), do: NIF.member_list_member_index(ref, id)
  def member_index(list, _id), do: raise_not_a_list(list)

  @doc "Bytes held natively by the list (members, groups, sessions, ranges)."
  @spec memory(t()) :: non_neg_integer()
  def memory(%__MODULE__{ref: ref}), do: NIF.member_list_memory(ref)
  def memory(list), do: raise_not_a_list(list)

  defp raise_not_a_list(list) do
    raise ArgumentError, "expected a Switchboard.MemberList, got: #{inspect(list)}"
  end
end
