defmodule Switchboard.MemberList.Behaviour do
  @moduledoc """
  The contract `Switchboard.MemberList` (native) and `Switchboard.MemberList.Pure`
  (the pure-Elixir twin) both implement: the lazy member list of one guild and
  the `GUILD_MEMBER_LIST_UPDATE` ops each subscribed session must receive.

  ## The list

  A sequence of items: `{:group, group_id, count}` headers and
  `{:member, user_id}` entries. Groups come in this order: hoisted roles by
  `position`, highest first (equal positions by `role_id` in term order; the
  header's `group_id` is the `role_id`), then `"online"` (members that are not
  offline and have no hoist), then `"offline"` (every offline member, whatever
  its hoist). `:idle` and `:dnd` count as online. Within a group members are
  ordered by `name` (bytes), then `user_id` (term order). A group with no
  members has no header; with `offline: :hidden` offline members and their
  group are left out of the list (but still counted in `member_count`).

  A hoisted group is identified by its whole `{position, role_id}` pair: the
  caller moves every member of a role when the role's position changes.
  Ids (users, roles, sessions) are any terms; two user ids that are `==`
  but not `=:=` (`1` and `1.0`) must not both be members.

  ## Updates

  Every call that changes what sessions see returns `updates`, a list of
  `{session_ids, ops}`. Every session that must hear about the change is in
  exactly one entry, sessions that receive the same ops share one entry, and
  sessions with nothing to learn appear nowhere. Entries are ordered by their
  first session, sessions by the order in which they first subscribed
  (a session that leaves and subscribes again counts as new), so both twins
  return identical updates for the same calls.

  Ops, applied in order by a client that keeps a list of known-or-unknown
  slots:

    * `{:sync, [first, last], items}` sets the range's slots (the list may end
      inside it: slots past its end become unknown);
    * `{:insert, index, item}` inserts at `index`, shifting later slots;
    * `{:delete, index}` removes the slot at `index`, shifting later slots back;
    * `{:update, index, item}` replaces one slot (a member whose name or status
      changed in place is sent as an update of its own entry, to be redrawn);
    * `{:invalidate, [first, last]}` forgets a range.

  After every call, each subscribed range of each session holds exactly the
  list's items, with no unknown slot inside the list and no known slot past
  its end. A change costs each range at most 8 ops and never a re-sync; a
  range whose items, header counts and shown members are unchanged gets no
  ops at all.

  The ops of one range never shift slots outside it while the list goes on
  past the range (an item pushed out at the bottom is deleted, one pulled in
  is inserted), so each range's ops are computed once and shared by every
  session that holds the range. A change is applied as up to four steps
  (remove the member's entry, update or remove its old header, update or add
  its new header, insert its entry); a session receives, step by step, the
  ops of each of its ranges in ascending order.
  """

  @typedoc "A list of either implementation."
  @type list_t :: term()
  @type user_id :: term()
  @type session_id :: term()
  @type group_id :: term()
  @type status :: :online | :idle | :dnd | :offline
  @type hoist :: nil | {position :: integer(), role_id :: term()}
  @type member :: %{
          required(:id) => user_id(),
          required(:name) => binary(),
          required(:status) => status(),
          optional(:hoist) => hoist(),
          optional(atom()) => term()
        }
  @type item :: {:group, group_id(), pos_integer()} | {:member, user_id()}
  @type range :: [non_neg_integer()]
  @type op ::
          {:sync, range(), [item()]}
          | {:insert, non_neg_integer(), item()}
          | {:update, non_neg_integer(), item()}
          | {:delete, non_neg_integer()}
          | {:invalidate, range()}
  @type updates :: [{[session_id()], [op()]}]
  @type counts :: %{
          member_count: non_neg_integer(),
          online_count: non_neg_integer(),
          groups: [{group_id(), pos_integer()}]
        }

  @doc "Creates an empty list. Options: `offline: :listed` (default) or `:hidden`."
  @callback new(keyword()) :: list_t()
  @doc "Adds a member, or applies any change of its name, status or hoist."
  @callback put(list_t(), member()) :: {updates(), list_t()}
  @doc "Removes a member; `{[], list}` when it is absent."
  @callback delete(list_t(), user_id()) :: {updates(), list_t()}
  @doc """
  Replaces a session's ranges: `:invalidate` for each dropped range, then
  `:sync` for each new one, to that session only. Kept ranges are not synced
  again. An empty list of ranges unsubscribes.
  """
  @callback subscribe(list_t(), session_id(), [range()]) :: {updates(), list_t()}
  @doc "Forgets a session's ranges without telling it anything."
  @callback unsubscribe(list_t(), session_id()) :: {[], list_t()}
  @doc "Every item of the list, in order."
  @callback items(list_t()) :: [item()]
  @doc "The number of items (headers and members) in the list."
  @callback size(list_t()) :: non_neg_integer()
  @doc "Member and online counts and the listed groups with their counts."
  @callback counts(list_t()) :: counts()
  @doc "Index of the member's entry, or `nil` (absent, or offline and hidden)."
  @callback member_index(list_t(), user_id()) :: non_neg_integer() | nil

  # ---------------------------------------------------------------------------
  # Shared argument checking: one wording for both twins.

  @max_ranges 5
  @max_range_items 100
  @statuses [:online, :idle, :dnd, :offline]

  @doc false
  def max_ranges, do: @max_ranges
  @doc false
  def max_range_items, do: @max_range_items

  @doc false
  @spec offline_option!(keyword()) :: :listed | :hidden
  def offline_option!(opts) when is_list(opts) do
    Enum.each(opts, fn
      {:offline, _} -> :ok
      other -> raise ArgumentError, "unknown option for a member list: #{inspect(other)}"
    end)

    case Keyword.get(opts, :offline, :listed) do
      mode when mode in [:listed, :hidden] ->
        mode

      other ->
        raise ArgumentError, "expected :offline to be :listed or :hidden, got: #{inspect(other)}"
    end
  end

  def offline_option!(opts),
    do: raise(ArgumentError, "expected options to be a keyword list, got: #{inspect(opts)}")

  @doc false
  @spec member!(term()) :: {user_id(), binary(), status(), hoist()}
  def member!(%{id: id, name: name, status: status} = member)
      when is_binary(name) and status in @statuses do
    case Map.get(member, :hoist) do
      nil -> {id, name, status, nil}
      {position, _role} = hoist when is_integer(position) -> {id, name, status, hoist}
      _ -> raise_member(member)
    end
  end

  def member!(member), do: raise_member(member)

  defp raise_member(member) do
    raise ArgumentError,
          "expected a member %{id: term, name: binary, status: :online | :idle | :dnd | " <>
            ":offline, hoist: nil | {integer, term}}, got: #{inspect(member)}"
  end

  @doc false
  # Sorted {first, last} tuples; raises unless `ranges` is a list of at most 5
  # non-overlapping [first, last] ranges of at most 100 items each.
  @spec ranges!(term()) :: [{non_neg_integer(), non_neg_integer()}]
  def ranges!(ranges) when is_list(ranges) and length(ranges) <= @max_ranges do
    sorted =
      ranges
      |> Enum.map(fn
        [first, last]
        when is_integer(first) and is_integer(last) and first >= 0 and first <= last and
               last - first < @max_range_items ->
          {first, last}

        _ ->
          raise_ranges(ranges)
      end)
      |> Enum.sort()

    sorted
    |> Enum.chunk_every(2, 1, :discard)
    |> Enum.each(fn [{_, last}, {next, _}] -> if next <= last, do: raise_ranges(ranges) end)

    sorted
  end

  def ranges!(ranges), do: raise_ranges(ranges)

  defp raise_ranges(ranges) do
    raise ArgumentError,
          "expected ranges to be a list of at most #{@max_ranges} non-overlapping " <>
            "[first, last] with 0 <= first <= last and at most #{@max_range_items} " <>
            "items each, got: #{inspect(ranges)}"
  end
end
