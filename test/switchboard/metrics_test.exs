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

  # A name with no tags is found by its term word first: a binary's word is
  # reused for other binaries once the first is garbage, so every hit must
  # check the bytes too. Fresh binaries each pass, collected in between.
  test "names built at run time, whose words are reused, count under their own bytes" do
    prefix = "reuse.#{System.unique_integer([:positive])}."
    names = fn -> for i <- 1..500, do: prefix <> Integer.to_string(i) end

    for pass <- 1..4 do
      for {name, i} <- Enum.with_index(names.()),
          do: Switchboard.Metrics.increment(name, i + pass)

      :erlang.garbage_collect()
    end

    counters = Switchboard.Metrics.snapshot().counters

    for i <- 0..499 do
      assert counters[{prefix <> Integer.to_string(i + 1), []}] == 4 * i + 10
    end
  end

  test "one name with no tags is a separate metric for each kind, atom or string" do
    for name <- [
          :"kinds.#{System.unique_integer([:positive])}",
          "kinds.#{System.unique_integer()}"
        ] do
      for _ <- 1..3 do
        Switchboard.Metrics.increment(name, 2)
        Switchboard.Metrics.gauge(name, 7)
        Switchboard.Metrics.histogram(name, 40)
      end

      snapshot = Switchboard.Metrics.snapshot()
      assert snapshot.counters[{name, []}] == 6
      assert snapshot.gauges[{name, []}] == 7
      assert %{count: 3, min: 40, max: 40} = snapshot.histograms[{name, []}]
    end
  end
end
