defmodule Switchboard.MetricsTest do
  use ExUnit.Case, async: true
  import Bitwise
  use Switchboard.Contracts.MetricsContract, implementation: Switchboard.Metrics

  doctest Switchboard.Metrics

  test "native and twin report the same numbers for the same values" do
    name = "same.#{System.unique_integer([:positive])}"

    for i <- 1..3_000 do
      value = rem(i * 104_729, 5_000_000)
      Switchboard.Metrics.histogram(name, value)
      Switchboard.Metrics.Pure.histogram(name, value)
    end

    bounds = [100, 1_000, 100_000, 1_000_000]
    native = Switchboard.Metrics.snapshot(buckets: bounds, values: true).histograms[{name, []}]
    pure = Switchboard.Metrics.Pure.snapshot(buckets: bounds, values: true).histograms[{name, []}]
    assert native == pure
  end
end
