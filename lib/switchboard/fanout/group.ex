defmodule Switchboard.Fanout.Group do
  @moduledoc """
  A receiver group: a mutable set of local pids held natively, for the
  receivers a process fans out to again and again (a guild's sessions on
  this node).

  `Switchboard.Fanout.send/3` accepts a group in place of a pid list. The
  caller then does no per-receiver work at all with `offload: true` (the
  sender thread gets a snapshot of the members, O(1), and a copy of the
  message), and no list walk inline. Keep the group current with `add/2` and
  `remove/2` as sessions come and go; a fan-out in flight keeps the members
  it started with (changes copy the member array when a fan-out still holds
  it).

  Like a `Switchboard.SortedSet`, a group is a shared mutable resource:
  `add/2` and `remove/2` change it in place and return it. It is freed when
  no process references it any more. Dead members are skipped (and counted)
  by fan-outs until removed. Members must be local pids: remote receivers
  go through the list form of `Switchboard.Fanout.send/3`, which reaches each
  remote node's partitioner.

  `Switchboard.Fanout.Pure.Group` is the pure twin (an ETS set).

  ## Examples

      iex> alias Switchboard.Fanout.Group
      iex> group = Group.new([self()])
      iex> Switchboard.Fanout.send(group, :hello)
      %{local: 1, remote: 0, skipped: 0}
      iex> receive do: (:hello -> :got_it)
      :got_it
      iex> Group.size(Group.remove(group, self()))
      0
  """

  @behaviour Switchboard.Fanout.GroupBehaviour

  alias Switchboard.Fanout.Receivers
  alias Switchboard.NIF

  @enforce_keys [:ref]
  defstruct [:ref]

  @opaque t :: %__MODULE__{ref: reference()}

  @doc """
  A group of the given local pids (duplicates kept once). Long lists are
  added on a dirty scheduler.

      iex> Switchboard.Fanout.Group.new([self(), self()]) |> Switchboard.Fanout.Group.size()
      1

      iex> Switchboard.Fanout.Group.new([:nope])
      ** (ArgumentError) expected a local pid in the group's member list, got: :nope
  """
  @spec new([pid()]) :: t()
  @impl true
  def new(pids \\ []) do
    case NIF.fanout_group_new(pids) do
      {:bad_member, other} ->
        Receivers.bad_member!(other)

      {:improper, tail} ->
        Receivers.improper!(tail)

      {:not_list, other} ->
        Receivers.not_a_list!(other)

      ref ->
        %__MODULE__{ref: ref}
    end
  end

  @doc "Adds a local pid; returns the group."
  @spec add(t(), pid()) :: t()
  @impl true
  def add(%__MODULE__{ref: ref} = group, pid) do
    NIF.fanout_group_add(ref, check_pid!(pid))
    group
  end

  def add(other, _pid), do: raise_not_a_group(other)

  @doc "Removes a pid if present; returns the group."
  @spec remove(t(), pid()) :: t()
  @impl true
  def remove(%__MODULE__{ref: ref} = group, pid) do
    NIF.fanout_group_remove(ref, check_pid!(pid))
    group
  end

  def remove(other, _pid), do: raise_not_a_group(other)

  @doc "Whether `pid` is a member."
  @spec member?(t(), pid()) :: boolean()
  @impl true
  def member?(%__MODULE__{ref: ref}, pid), do: NIF.fanout_group_member(ref, check_pid!(pid))
  def member?(other, _pid), do: raise_not_a_group(other)

  @doc "The number of members."
  @spec size(t()) :: non_neg_integer()
  @impl true
  def size(%__MODULE__{ref: ref}), do: NIF.fanout_group_size(ref)
  def size(other), do: raise_not_a_group(other)

  @doc "The members, in no particular order."
  @spec to_list(t()) :: [pid()]
  @impl true
  def to_list(%__MODULE__{ref: ref}), do: NIF.fanout_group_to_list(ref)
  def to_list(other), do: raise_not_a_group(other)

  defp check_pid!(pid) when is_pid(pid) and node(pid) == node(), do: pid

  defp check_pid!(other), do: Receivers.not_a_local_pid!(other)

  @doc false
  def raise_not_a_group(other), do: Receivers.not_a_group!(__MODULE__, other)
end

defimpl Inspect, for: Switchboard.Fanout.Group do
  def inspect(group, _opts),
    do: "#Switchboard.Fanout.Group<size: #{Switchboard.Fanout.Group.size(group)}>"
end
