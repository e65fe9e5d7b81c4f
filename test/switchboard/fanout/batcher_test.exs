defmodule Switchboard.Fanout.BatcherTest do
  use ExUnit.Case, async: true
  use Switchboard.Property

  alias Switchboard.Fanout.Batcher

  doctest Switchboard.Fanout.Batcher

  defp start(opts) do
    {:ok, batcher} = Batcher.start_link(Keyword.put_new(opts, :receivers, [self()]))
    batcher
  end

  defp batches(acc \\ []) do
    receive do
      {:batch, events} -> batches([events | acc])
    after
      0 -> Enum.reverse(acc)
    end
  end

  test "flushes when the window holds max_events, then on the delay" do
    batcher = start(max_events: 2, max_delay_ms: 50)
    for event <- [:a, :b, :c, :d, :e], do: Batcher.push(batcher, event)
    assert_receive {:batch, [:a, :b]}
    assert_receive {:batch, [:c, :d]}
    refute_received {:batch, _}
    assert_receive {:batch, [:e]}, 1_000
  end

  test "flushes max_delay_ms after the window's first event, not before" do
    # A window long enough that a busy CI machine pausing this process
    # between the two pushes does not split them (it did at 60 ms).
    batcher = start(max_events: 1_000, max_delay_ms: 300)
    started = System.monotonic_time(:millisecond)
    Batcher.push(batcher, :one)
    Process.sleep(20)
    Batcher.push(batcher, :two)
    assert_receive {:batch, [:one, :two]}, 2_000
    assert System.monotonic_time(:millisecond) - started >= 300
    # The next window starts its own delay.
    Batcher.push(batcher, :three)
    assert_receive {:batch, [:three]}, 1_000
  end

  test "every receiver gets one message per flush" do
    parent = self()

    receivers =
      for i <- 1..3 do
        spawn(fn ->
          receive do
            {:batch, events} -> send(parent, {i, events})
          end
        end)
      end

    batcher = start(receivers: [nil | receivers], max_events: 3)
    for event <- 1..3, do: Batcher.push(batcher, event)
    for i <- 1..3, do: assert_receive({^i, [1, 2, 3]})
  end

  test "coalescing keeps the latest event per key at the key's first position" do
    batcher = start(coalesce: fn {user, _} -> user end, max_events: 100)

    for event <- [{:ann, :online}, {:bob, :online}, {:ann, :idle}, {:cat, :dnd}, {:ann, :away}],
        do: Batcher.push(batcher, event)

    Batcher.flush(batcher)
    assert_receive {:batch, [{:ann, :away}, {:bob, :online}, {:cat, :dnd}]}

    assert %{accepted: 5, coalesced: 2, flushes: 1, events_flushed: 3} = Batcher.stats(batcher)
  end

  test "events whose key is nil are never coalesced" do
    batcher = start(coalesce: fn {key, _} -> key end)
    for event <- [{nil, 1}, {:k, 2}, {nil, 3}, {:k, 4}], do: Batcher.push(batcher, event)
    Batcher.flush(batcher)
    assert_receive {:batch, [{nil, 1}, {:k, 4}, {nil, 3}]}
  end

  test "max_events counts entries after coalescing" do
    batcher = start(coalesce: & &1, max_events: 2, max_delay_ms: 10_000)
    for event <- [:x, :x, :x, :x], do: Batcher.push(batcher, event)
    refute_receive {:batch, _}, 50
    Batcher.push(batcher, :y)
    assert_receive {:batch, [:x, :y]}
  end

  test "a stop flushes the window and the pushes still in the mailbox" do
    batcher = start(max_events: 1_000, max_delay_ms: 10_000)
    Batcher.push(batcher, 1)
    Batcher.push(batcher, 2)
    # While suspended the batcher handles only system messages, so these
    # pushes are still in its mailbox when it terminates.
    :sys.suspend(batcher)
    Batcher.push(batcher, 3)
    Batcher.push(batcher, 4)
    :ok = GenServer.stop(batcher)
    assert_received {:batch, [1, 2, 3, 4]}
  end

  test "a supervisor shutdown flushes too" do
    parent = self()

    {:ok, supervisor} =
      Supervisor.start_link(
        [{Batcher, receivers: [parent], max_delay_ms: 10_000, name: :batcher_shutdown_test}],
        strategy: :one_for_one
      )

    Batcher.push(:batcher_shutdown_test, :last_words)
    Supervisor.stop(supervisor)
    assert_received {:batch, [:last_words]}
  end

  test "put_receivers flushes the window to the old receivers first" do
    parent = self()

    other =
      spawn(fn ->
        receive do
          {:batch, events} -> send(parent, {:other, events})
        end
      end)

    batcher = start(max_delay_ms: 10_000)
    Batcher.push(batcher, :before)
    Batcher.put_receivers(batcher, [other])
    assert_received {:batch, [:before]}
    Batcher.push(batcher, :after)
    Batcher.flush(batcher)
    assert_receive {:other, [:after]}
    refute_received {:batch, _}
  end

  test "delivers with the pure twin or with fan-out options" do
    batcher = start(fanout: Switchboard.Fanout.Pure, max_events: 1)
    Batcher.push(batcher, :pure)
    assert_receive {:batch, [:pure]}

    batcher = start(fanout_opts: [offload: true, pack: :binary], max_events: 1)
    Batcher.push(batcher, :offloaded)
    assert_receive {:batch, [:offloaded]}
  end

  test "bad options raise ArgumentError" do
    assert_raise ArgumentError, ~r/unknown keys \[:max\]/, fn -> Batcher.start_link(max: 1) end

    assert_raise ArgumentError,
                 "expected :max_delay_ms to be a non-negative integer, got: -1",
                 fn -> Batcher.start_link(max_delay_ms: -1) end

    assert_raise ArgumentError,
                 "expected :coalesce to be a 1-arity function or nil, got: :user",
                 fn -> Batcher.start_link(coalesce: :user) end

    assert_raise ArgumentError,
                 "expected a pid or nil in the receiver list, got: :receiver",
                 fn -> Batcher.start_link(receivers: [:receiver]) end
  end

  # Checked at start: a bad one used to be accepted, and then every event
  # was lost at the first flush (the batcher crashed inside send/3).
  test "bad :fanout or :fanout_opts raise at start, naming the option" do
    assert_raise ArgumentError,
                 "invalid :fanout_opts: expected :offload to be a boolean, got: :yes",
                 fn -> Batcher.start_link(fanout_opts: [offload: :yes]) end

    assert_raise ArgumentError,
                 "invalid :fanout_opts: expected :deliver to be :term or :packed, got: :json",
                 fn -> Batcher.start_link(fanout_opts: [deliver: :json]) end

    assert_raise ArgumentError, ~r/^invalid :fanout_opts: unknown keys \[:packing\]/, fn ->
      Batcher.start_link(fanout_opts: [packing: :binary])
    end

    assert_raise ArgumentError,
                 "invalid :fanout_opts: expected fan-out options to be a keyword list, got: :offload",
                 fn -> Batcher.start_link(fanout_opts: :offload) end

    for bad <- [Switchboard.NoSuchFanout, Enum, "Switchboard.Fanout"] do
      assert_raise ArgumentError,
                   "expected :fanout to be a module with send/3 (Switchboard.Fanout or " <>
                     "Switchboard.Fanout.Pure), got: #{inspect(bad)}",
                   fn -> Batcher.start_link(fanout: bad) end
    end
  end

  describe "properties" do
    property_test "without coalescing, the batches are exactly the events in order",
      numtests: 100 do
      forall {events, max_events} <- {list(integer()), integer(1, 10)} do
        batcher = start(max_events: max_events, max_delay_ms: 10_000)
        Enum.each(events, &Batcher.push(batcher, &1))
        Batcher.flush(batcher)
        batches = batches()
        GenServer.stop(batcher)

        List.flatten(batches) == events and
          Enum.all?(batches, &(length(&1) <= max_events)) and
          Enum.all?(Enum.drop(batches, -1), &(length(&1) == max_events))
      end
    end

    property_test "with coalescing, applying the batches gives the latest state per key",
      numtests: 100 do
      forall {updates, max_events} <-
               {list(tuple([integer(1, 8), integer()])), integer(1, 5)} do
        batcher = start(coalesce: &elem(&1, 0), max_events: max_events, max_delay_ms: 10_000)
        Enum.each(updates, &Batcher.push(batcher, &1))
        Batcher.flush(batcher)
        batches = batches()
        GenServer.stop(batcher)

        apply_all = fn events ->
          Enum.reduce(events, %{}, fn {k, v}, acc -> Map.put(acc, k, v) end)
        end

        apply_all.(List.flatten(batches)) == apply_all.(updates) and
          Enum.all?(batches, fn batch ->
            keys = Enum.map(batch, &elem(&1, 0))
            keys == Enum.uniq(keys)
          end)
      end
    end
  end
end
