# The cost of the NIF boundary's Elixir side: each NIF is called through the
# public function that `defnif` generates (a local call plus a catch that
# turns the boundary's tagged bad-argument error into an ArgumentError) rather
# than the NIF stub itself. Baseline: the stub called directly; candidate:
# the wrapper; same run, interleaved by the harness, per call.
#
#   MIX_ENV=prod mix run bench/boundary.exs
Code.require_file("support/harness.ex", __DIR__)
Code.require_file("../test/support/test_nif.ex", __DIR__)

alias Switchboard.Bench.Harness

defmodule BoundaryBench do
  @calls 100_000

  def calls, do: @calls

  def add_direct, do: add_direct(@calls, 0)
  defp add_direct(0, acc), do: acc
  defp add_direct(n, acc), do: add_direct(n - 1, Switchboard.Test.NIF.nif_diag_add(acc, 1))

  def add_wrapped, do: add_wrapped(@calls, 0)
  defp add_wrapped(0, acc), do: acc
  defp add_wrapped(n, acc), do: add_wrapped(n - 1, Switchboard.Test.NIF.diag_add(acc, 1))

  def size_direct(set), do: size_direct(set, @calls, 0)
  defp size_direct(_set, 0, acc), do: acc

  defp size_direct(set, n, acc),
    do: size_direct(set, n - 1, acc + Switchboard.NIF.nif_sorted_set_size(set))

  def size_wrapped(set), do: size_wrapped(set, @calls, 0)
  defp size_wrapped(_set, 0, acc), do: acc

  defp size_wrapped(set, n, acc),
    do: size_wrapped(set, n - 1, acc + Switchboard.NIF.sorted_set_size(set))
end

calls = BoundaryBench.calls()
set = Switchboard.SortedSet.new() |> Switchboard.SortedSet.add(1) |> Map.fetch!(:ref)

Harness.run("boundary", [
  [
    name: "diag_add(acc, 1), #{calls} calls",
    ops: calls,
    samples: 40,
    baseline: {"NIF stub called directly", fn _ -> BoundaryBench.add_direct() end},
    candidates: [{"defnif wrapper", fn _ -> BoundaryBench.add_wrapped() end}],
    check: fn _, result -> result == calls end
  ],
  [
    name: "sorted_set_size(set), #{calls} calls",
    ops: calls,
    samples: 40,
    baseline: {"NIF stub called directly", fn _ -> BoundaryBench.size_direct(set) end},
    candidates: [{"defnif wrapper", fn _ -> BoundaryBench.size_wrapped(set) end}],
    check: fn _, result -> result == calls end
  ]
])
