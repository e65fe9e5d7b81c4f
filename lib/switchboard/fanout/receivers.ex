defmodule Switchboard.Fanout.Receivers do
  @moduledoc false
  # One wording for bad receiver lists and group members, shared by both
  # fan-out twins and both group twins. The native walks (an offloaded
  # fan-out, a partition) raise the same words from C++ through
  # Switchboard.Errors, so every path reports one error for one input:
  #
  #   expected a list of pids, got: :foo
  #   expected the end of the list of pids to be [], got: :foo
  #   expected a pid or nil in the receiver list, got: {:not, :a, :pid}
  #   expected a local pid in the group's member list, got: :x

  alias Switchboard.Errors

  @doc "Checks a receiver list: pids and nils, proper. Raises naming the bad term."
  @spec check!(term()) :: :ok
  def check!(pids) when is_list(pids), do: check_entries(pids)
  def check!(other), do: not_a_list!(other)

  defp check_entries([pid | rest]) when is_pid(pid), do: check_entries(rest)
  defp check_entries([nil | rest]), do: check_entries(rest)
  defp check_entries([]), do: :ok
  defp check_entries([other | _]), do: bad_receiver!(other)
  defp check_entries(tail), do: improper!(tail)

  @spec not_a_list!(term()) :: no_return()
  def not_a_list!(term), do: raise(Errors.bad_argument(nil, "a list of pids", term))

  @spec improper!(term()) :: no_return()
  def improper!(tail), do: raise(Errors.bad_argument("the end of the list of pids", "[]", tail))

  @spec bad_receiver!(term()) :: no_return()
  def bad_receiver!(item),
    do: raise(Errors.bad_argument(nil, "a pid or nil in the receiver list", item))

  @spec bad_member!(term()) :: no_return()
  def bad_member!(item),
    do: raise(Errors.bad_argument(nil, "a local pid in the group's member list", item))

  @spec not_a_group!(module(), term()) :: no_return()
  def not_a_group!(module, term),
    do: raise(ArgumentError, "expected a #{inspect(module)}, got: #{inspect(term)}")

  @spec not_a_local_pid!(term()) :: no_return()
  def not_a_local_pid!(term), do: raise(Errors.bad_argument(nil, "a local pid", term))
end
