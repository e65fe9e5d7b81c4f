defmodule Switchboard.Fanout.Pure.Group do
  @moduledoc """
  The pure twin of `Switchboard.Fanout.Group`: the same API over a public
  ETS set. The table belongs to the process that called `new/1` and goes
  away with it (a native group lives as long as it is referenced).

      iex> alias Switchboard.Fanout.Pure.Group
      iex> group = Group.new([self(), self()])
      iex> Group.size(group)
      1
      iex> Switchboard.Fanout.Pure.send(group, :hi)
      %{local: 1, remote: 0, skipped: 0}
      iex> receive do: (:hi -> :ok)
      :ok
  """

  @behaviour Switchboard.Fanout.GroupBehaviour

  @enforce_keys [:table]
  alias Switchboard.Fanout.Receivers

  defstruct [:table]

  @opaque t :: %__MODULE__{table: :ets.tid()}

  @spec new([pid()]) :: t()
  @impl true
  def new(pids \\ [])

  def new(pids) when is_list(pids) do
    rows = rows(pids, [])
    table = :ets.new(__MODULE__, [:set, :public, read_concurrency: true])
    :ets.insert(table, rows)
    %__MODULE__{table: table}
  end

  def new(other), do: Receivers.not_a_list!(other)

  @spec add(t(), pid()) :: t()
  @impl true
  def add(%__MODULE__{table: table} = group, pid) do
    :ets.insert(table, {check_pid!(pid)})
    group
  end

  def add(other, _pid), do: raise_not_a_group(other)

  @spec remove(t(), pid()) :: t()
  @impl true
  def remove(%__MODULE__{table: table} = group, pid) do
    :ets.delete(table, check_pid!(pid))
    group
  end

  def remove(other, _pid), do: raise_not_a_group(other)

  @spec member?(t(), pid()) :: boolean()
  @impl true
  def member?(%__MODULE__{table: table}, pid), do: :ets.member(table, check_pid!(pid))
  def member?(other, _pid), do: raise_not_a_group(other)

  @spec size(t()) :: non_neg_integer()
  @impl true
  def size(%__MODULE__{table: table}), do: :ets.info(table, :size)
  def size(other), do: raise_not_a_group(other)

  @spec to_list(t()) :: [pid()]
  @impl true
  def to_list(%__MODULE__{table: table}), do: :ets.select(table, [{{:"$1"}, [], [:"$1"]}])
  def to_list(other), do: raise_not_a_group(other)

  defp rows([pid | rest], acc) when is_pid(pid) and node(pid) == node(),
    do: rows(rest, [{pid} | acc])

  defp rows([], acc), do: acc

  defp rows([other | _], _acc), do: Receivers.bad_member!(other)
  defp rows(tail, _acc), do: Receivers.improper!(tail)

  defp check_pid!(pid) when is_pid(pid) and node(pid) == node(), do: pid
  defp check_pid!(other), do: Receivers.not_a_local_pid!(other)

  defp raise_not_a_group(other), do: Receivers.not_a_group!(__MODULE__, other)
end
