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

  @enforce_keys [:table]
  defstruct [:table]

  @opaque t :: %__MODULE__{table: :ets.tid()}

  @spec new([pid()]) :: t()
  def new(pids \\ [])

  def new(pids) when is_list(pids) do
    rows = rows(pids, [])
    table = :ets.new(__MODULE__, [:set, :public, read_concurrency: true])
    :ets.insert(table, rows)
    %__MODULE__{table: table}
  end

  def new(other), do: raise(ArgumentError, "expected a list of pids, got: #{inspect(other)}")

  @spec add(t(), pid()) :: t()
  def add(%__MODULE__{table: table} = group, pid) do
    :ets.insert(table, {check_pid!(pid)})
    group
  end

  def add(other, _pid), do: raise_not_a_group(other)

  @spec remove(t(), pid()) :: t()
  def remove(%__MODULE__{table: table} = group, pid) do
    :ets.delete(table, check_pid!(pid))
    group
  end

  def remove(other, _pid), do: raise_not_a_group(other)

  @spec member?(t(), pid()) :: boolean()
  def member?(%__MODULE__{table: table}, pid), do: :ets.member(table, check_pid!(pid))
  def member?(other, _pid), do: raise_not_a_group(other)

  @spec size(t()) :: non_neg_integer()
  def size(%__MODULE__{table: table}), do: :ets.info(table, :size)
  def size(other), do: raise_not_a_group(other)

  @spec to_list(t()) :: [pid()]
  def to_list(%__MODULE__{table: table}), do: :ets.select(table, [{{:"$1"}, [], [:"$1"]}])
  def to_list(other), do: raise_not_a_group(other)

  defp rows([pid | rest], acc) when is_pid(pid) and node(pid) == node(),
    do: rows(rest, [{pid} | acc])

  defp rows([], acc), do: acc

  defp rows([other | _], _acc) do
    raise ArgumentError, "expected a local pid in the group's member list, got: #{inspect(other)}"
  end

  defp rows(tail, _acc) do
    raise ArgumentError, "expected a proper list of pids, got a list ending in: #{inspect(tail)}"
  end

  defp check_pid!(pid) when is_pid(pid) and node(pid) == node(), do: pid
  defp check_pid!(other), do: raise(ArgumentError, "expected a local pid, got: #{inspect(other)}")

  defp raise_not_a_group(other) do
    raise ArgumentError, "expected a Switchboard.Fanout.Pure.Group, got: #{inspect(other)}"
  end
end
