defmodule Switchboard.Contracts.MetricsContract do
  @moduledoc false
  # The contract of Switchboard.Metrics.Behaviour, run by every
  # implementation's test file:
  #
  #   use Switchboard.Contracts.MetricsContract, implementation: Switchboard.Metrics

  defmacro __using__(opts) do
    quote do
      @metrics Keyword.fetch!(unquote(opts), :implementation)

      defp unique(label), do: "#{label}.#{System.unique_integer([:positive])}"

      # The exact quantile the contract bounds: the value at rank ceil(q * n).
      defp exact_quantile(sorted, q) do
        count = length(sorted)
        rank = min(max(ceil(q * count), 1), count)
        Enum.at(sorted, rank - 1)
      end

      describe "contract: counters" do
        test "increments add up, tags in any order name one counter" do
          name = unique("c")
          assert @metrics.increment(name) == :ok
          @metrics.increment(name, 41)
          @metrics.increment(name, 5, b: 2, a: "x")
          @metrics.increment(name, 5, a: "x", b: 2)
          @metrics.increment(name, -1, a: "x", b: 2)
          counters = @metrics.snapshot().counters
          assert counters[{name, []}] == 42
          assert counters[{name, [a: "x", b: 2]}] == 9
          atom_name = String.to_atom(name)
          @metrics.increment(atom_name, 7)
          assert @metrics.snapshot().counters[{atom_name, []}] == 7
        end

        test "a concurrent storm loses and doubles no increment" do
          name = unique("storm")
          parent = self()

          workers =
            for worker <- 1..16 do
              spawn_link(fn ->
                for i <- 1..2_000 do
                  @metrics.increment(name, 1)
                  @metrics.increment(name, i, worker: rem(worker, 4))
                  # Moving between schedulers must not matter.
                  if rem(i, 500) == 0, do: :erlang.yield()
                end

                send(parent, {:done, self()})
              end)
            end

          for pid <- workers, do: assert_receive({:done, ^pid}, 20_000)
          counters = @metrics.snapshot().counters
          assert counters[{name, []}] == 16 * 2_000

          for tag <- 0..3 do
            assert counters[{name, [worker: tag]}] == 4 * div(2_000 * 2_001, 2)
          end
        end
      end

      describe "contract: gauges" do
        test "the last value set wins, integers and floats as given" do
          name = unique("g")
          assert @metrics.gauge(name, 10) == :ok
          @metrics.gauge(name, 12)
          @metrics.gauge(name, 2.5, zone: :eu, shard: 1)
          @metrics.gauge(name, -3, shard: 1, zone: :eu)
          gauges = @metrics.snapshot().gauges
          assert gauges[{name, []}] === 12
          assert gauges[{name, [shard: 1, zone: :eu]}] === -3
          @metrics.gauge(name, 0.25)
          assert @metrics.snapshot().gauges[{name, []}] === 0.25
        end
      end

      describe "contract: histograms" do
        test "count, min, max and mean are exact; quantiles within 1%" do
          name = unique("h")
          values = for i <- 1..5_000, do: rem(i * 7919, 100_000) + div(i * i, 3)
          Enum.each(values, &@metrics.histogram(name, &1, path: "/x"))
          summary = @metrics.snapshot().histograms[{name, [path: "/x"]}]
          sorted = Enum.sort(values)
          assert summary.count == 5_000
          assert summary.min == hd(sorted)
          assert summary.max == List.last(sorted)
          assert_in_delta summary.mean, Enum.sum(values) / 5_000, 1.0e-6

          for {field, q} <- [p50: 0.5, p90: 0.9, p99: 0.99, p999: 0.999] do
            exact = exact_quantile(sorted, q)
            assert abs(Map.fetch!(summary, field) - exact) <= 0.01 * exact
          end

          assert Map.keys(summary) |> Enum.sort() ==
                   [:count, :max, :mean, :min, :p50, :p90, :p99, :p999]
        end

        test "small values are exact, floats are rounded" do
          name = unique("small")
          for v <- 1..100, do: @metrics.histogram(name, v)
          @metrics.histogram(name, 100.4)
          summary = @metrics.snapshot().histograms[{name, []}]
          assert %{count: 101, min: 1, max: 100, p50: 51, p90: 91, p99: 100} = summary
        end

        test "buckets: cumulative counts and the exact sum on request" do
          name = unique("buckets")
          for v <- 1..100, do: @metrics.histogram(name, v)
          summary = @metrics.snapshot(buckets: [10, 50, 1_000]).histograms[{name, []}]
          assert summary.sum == 5050
          assert summary.buckets == [{10, 10}, {50, 50}, {1_000, 100}]

          assert_raise ArgumentError, ~r/expected :buckets to be a list/, fn ->
            @metrics.snapshot(buckets: [-1])
          end

          @metrics.histogram(name, 1_000)
          @metrics.histogram(name, 1_001)
          values = @metrics.snapshot(values: true).histograms[{name, []}].values
          assert Enum.take(values, 3) == [{1, 1}, {2, 1}, {3, 1}]
          # 1000 and 1001 share a bucket of width 4: 1000..1003, midpoint 1001.
          assert List.last(values) == {1_001, 2}
          assert Enum.sum(for {_, n} <- values, do: n) == 102
        end

        test "measure/3 times the function in microseconds and returns its result" do
          name = unique("measure")

          assert @metrics.measure(name, [op: :sleep], fn -> Process.sleep(5) && :slept end) ==
                   :slept

          assert @metrics.measure(name, fn -> :quick end) == :quick
          %{count: 1, min: slept} = @metrics.snapshot().histograms[{name, [op: :sleep]}]
          assert slept >= 5_000 and slept < 1_000_000
          assert %{count: 1} = @metrics.snapshot().histograms[{name, []}]
        end
      end

      describe "contract: bad arguments" do
        test "bad names raise ArgumentError" do
          long = String.duplicate("x", 256)

          for bad <- [~c"list", 1, {:a}, long, 2.5] do
            message = Switchboard.Test.MetricsErrors.name(bad)
            assert_raise ArgumentError, message, fn -> @metrics.increment(bad) end
            assert_raise ArgumentError, message, fn -> @metrics.gauge(bad, 1) end
            assert_raise ArgumentError, message, fn -> @metrics.histogram(bad, 1) end
          end

          # nil is an atom: a valid name.
          assert @metrics.increment(nil) == :ok
        end

        test "bad tags raise ArgumentError" do
          too_many = for i <- 1..33, do: {String.to_atom("k#{i}"), i}

          for bad <- [
                [:a],
                [{"a", 1}],
                [a: 1.5],
                [a: 1, a: 2],
                [a: {1}],
                too_many,
                :a,
                [{:a, 1} | :b]
              ] do
            message = Switchboard.Test.MetricsErrors.tags(bad)
            assert_raise ArgumentError, message, fn -> @metrics.increment("t", 1, bad) end
            assert_raise ArgumentError, message, fn -> @metrics.gauge("t", 1, bad) end
            assert_raise ArgumentError, message, fn -> @metrics.histogram("t", 1, bad) end
          end

          assert @metrics.increment("t", 1, Enum.take(too_many, 32)) == :ok
        end

        test "bad values raise ArgumentError" do
          assert_raise ArgumentError,
                       "expected an integer (64-bit) to add to a counter, got: 1.0",
                       fn -> @metrics.increment("v", 1.0) end

          assert_raise ArgumentError, ~r/to add to a counter, got: 36893488147419103232/, fn ->
            @metrics.increment("v", 1 <<< 65)
          end

          assert_raise ArgumentError,
                       "expected a number (an integer of 64 bits or a float) for a gauge, got: \"1\"",
                       fn -> @metrics.gauge("v", "1") end

          assert_raise ArgumentError,
                       "expected a non-negative number for a histogram, got: -0.5",
                       fn -> @metrics.histogram("v", -0.5) end

          assert_raise ArgumentError, "expected a function of arity 0, got: :f", fn ->
            @metrics.measure("v", [], :f)
          end
        end
      end
    end
  end
end

defmodule Switchboard.Test.MetricsErrors do
  @moduledoc false
  # The messages the contract pins, written out once.
  def name(bad),
    do: "expected a metric name (an atom or a string of at most 255 bytes), got: " <> inspect(bad)

  def tags(bad),
    do:
      "expected tags as a keyword list of at most 32 distinct atom keys with atom, " <>
        "string (at most 255 bytes) or integer values, got: " <> inspect(bad)
end
