defmodule Switchboard.Contracts.SemaphoreContract do
  @moduledoc false
  # The contract of Switchboard.Semaphore.Behaviour, run by every
  # implementation's test file:
  #
  #   use Switchboard.Contracts.SemaphoreContract, implementation: Switchboard.Semaphore

  defmacro __using__(opts) do
    quote do
      @semaphore Keyword.fetch!(unquote(opts), :implementation)
      @free_within_us Keyword.fetch!(unquote(opts), :free_within_us)

      defp unique_name(label), do: {label, System.unique_integer([:positive])}

      # A process that takes `count` slots of `name` (with `max`) and waits.
      defp holder(semaphore, name, max, count \\ 1) do
        parent = self()

        pid =
          spawn(fn ->
            results = for _ <- 1..count, do: semaphore.acquire(name, max)
            send(parent, {:acquired, self(), results})
            Process.sleep(:infinity)
          end)

        assert_receive {:acquired, ^pid, results}
        {pid, results}
      end

      # Waits (up to `limit_us`) for count(name) to reach `expected`; returns
      # the microseconds it took.
      defp wait_for_count(semaphore, name, expected, limit_us) do
        start = System.monotonic_time(:microsecond)
        wait_for_count(semaphore, name, expected, start, start + limit_us)
      end

      defp wait_for_count(semaphore, name, expected, start, deadline) do
        now = System.monotonic_time(:microsecond)

        cond do
          semaphore.count(name) == expected -> now - start
          now > deadline -> flunk("count stayed #{semaphore.count(name)}, expected #{expected}")
          true -> wait_for_count(semaphore, name, expected, start, deadline)
        end
      end

      describe "contract: acquire and release" do
        test "slots are taken up to max and given back" do
          name = unique_name(:basic)
          assert @semaphore.count(name) == 0
          assert @semaphore.acquire(name, 2)
          assert @semaphore.acquire(name, 2)
          refute @semaphore.acquire(name, 2)
          assert @semaphore.count(name) == 2
          assert @semaphore.release(name) == :ok
          assert @semaphore.count(name) == 1
          assert @semaphore.acquire(name, 2)
          refute @semaphore.acquire(name, 0)
        end

        test "names are any term" do
          for name <- [make_ref(), "binary", {:tuple, [1, 2]}, %{a: 1}, 1.5, self()] do
            assert @semaphore.acquire(name, 1)
            refute @semaphore.acquire(name, 1)
            assert @semaphore.count(name) == 1
            @semaphore.release(name)
            assert @semaphore.count(name) == 0
          end
        end

        test "a large name is hashed off the normal scheduler and still works" do
          name = {:big, :binary.copy("x", 100_000), System.unique_integer()}
          assert @semaphore.acquire(name, 1)
          refute @semaphore.acquire(name, 1)
          @semaphore.release(name)
          assert @semaphore.count(name) == 0
        end

        test "release by a process holding nothing changes nothing" do
          name = unique_name(:foreign_release)
          {_pid, [true]} = holder(@semaphore, name, 5)
          assert @semaphore.release(name) == :ok
          assert @semaphore.count(name) == 1
          assert @semaphore.release(unique_name(:never_used)) == :ok
        end

        test "call/3 releases after the function returns or raises" do
          name = unique_name(:call)
          assert @semaphore.call(name, 1, fn -> @semaphore.count(name) end) == 1
          assert @semaphore.count(name) == 0
          assert_raise RuntimeError, fn -> @semaphore.call(name, 1, fn -> raise "boom" end) end
          assert @semaphore.count(name) == 0
          {_pid, [true]} = holder(@semaphore, name, 1)
          assert @semaphore.call(name, 1, fn -> :ran end) == {:error, :max}
          assert @semaphore.call_linksafe(name, 2, fn -> :ran end) == :ran
        end

        test "the linksafe variants take and give back slots" do
          name = unique_name(:linksafe)
          assert @semaphore.acquire_linksafe(name, :id, 1)
          refute @semaphore.acquire_linksafe(name, :other, 1)
          assert @semaphore.release_linksafe(name, :id) == :ok
          assert @semaphore.count(name) == 0
        end

        test "reset sets unowned slots that any release gives back" do
          name = unique_name(:reset)
          {pid, [true, true]} = holder(@semaphore, name, 5, 2)
          assert @semaphore.reset(name, 3) == :ok
          assert @semaphore.count(name) == 3
          Process.exit(pid, :kill)
          # The dead holder's slots were taken by reset: nothing more is freed.
          Process.sleep(20)
          assert @semaphore.count(name) == 3
          for _ <- 1..3, do: @semaphore.release(name)
          assert @semaphore.count(name) == 0
          @semaphore.release(name)
          assert @semaphore.count(name) == 0
          assert @semaphore.reset(name) == :ok
          assert @semaphore.count(name) == 0
        end
      end

      describe "contract: bad arguments" do
        test "max and reset values must be non-negative integers" do
          for bad <- [-1, 1.0, nil, :infinity, "3"] do
            assert_raise ArgumentError,
                         "expected max to be a non-negative integer, got: #{inspect(bad)}",
                         fn -> @semaphore.acquire(:bad_max, bad) end

            assert_raise ArgumentError, ~r/expected max to be a non-negative integer/, fn ->
              @semaphore.call(:bad_max, bad, fn -> :never end)
            end

            assert_raise ArgumentError,
                         "expected value to be a non-negative integer, got: #{inspect(bad)}",
                         fn -> @semaphore.reset(:bad_max, bad) end
          end

          assert_raise ArgumentError, "expected a function of arity 0, got: :not_a_fun", fn ->
            @semaphore.call(:bad_fun, 1, :not_a_fun)
          end
        end
      end

      describe "contract: holders that die" do
        test "a killed holder's slots are free at once" do
          name = unique_name(:killed)
          {pid, [true, true, true]} = holder(@semaphore, name, 3, 3)
          refute @semaphore.acquire(name, 3)
          ref = Process.monitor(pid)
          Process.exit(pid, :kill)
          assert_receive {:DOWN, ^ref, :process, ^pid, :killed}
          # Once the holder is dead its slots are back within 1 ms for the
          # native module (its `down` callback runs as the process exits);
          # the twin's monitor server must first be scheduled.
          took_us = wait_for_count(@semaphore, name, 0, @free_within_us)
          assert took_us <= @free_within_us
          assert @semaphore.acquire(name, 3)
        end

        test "a holder exiting normally frees its slots, and a released holder frees nothing" do
          name = unique_name(:exit)
          parent = self()

          pid =
            spawn(fn ->
              true = @semaphore.acquire(name, 10)
              true = @semaphore.acquire(name, 10)
              :ok = @semaphore.release(name)
              send(parent, :ready)

              receive do
                :stop -> :ok
              end
            end)

          {_other, [true]} = holder(@semaphore, name, 10)
          assert_receive :ready
          assert @semaphore.count(name) == 2
          ref = Process.monitor(pid)
          send(pid, :stop)
          assert_receive {:DOWN, ^ref, _, _, _}
          wait_for_count(@semaphore, name, 1, 100_000)
          Process.sleep(10)
          assert @semaphore.count(name) == 1
        end

        test "many racing processes never exceed max, and all slots come back" do
          name = unique_name(:race)
          max = 4
          parent = self()
          inside = :counters.new(2, [:atomics])

          workers =
            for _ <- 1..32 do
              spawn_link(fn ->
                for _ <- 1..300 do
                  if @semaphore.acquire(name, max) do
                    now = :counters.get(inside, 1) + 1
                    :counters.add(inside, 1, 1)
                    if now > :counters.get(inside, 2), do: :counters.put(inside, 2, now)
                    :counters.sub(inside, 1, 1)
                    @semaphore.release(name)
                  end
                end

                send(parent, {:done, self()})
              end)
            end

          for pid <- workers, do: assert_receive({:done, ^pid}, 10_000)
          assert :counters.get(inside, 2) <= max
          assert @semaphore.count(name) == 0
        end

        test "racing holders that are killed free everything they held" do
          name = unique_name(:race_kill)

          holders =
            for _ <- 1..20 do
              spawn(fn ->
                for _ <- 1..50, @semaphore.acquire(name, 10), do: :ok
                Process.sleep(:infinity)
              end)
            end

          wait_for_count(@semaphore, name, 10, 1_000_000)
          Enum.each(holders, &Process.exit(&1, :kill))
          wait_for_count(@semaphore, name, 0, 1_000_000)
        end

        test "lowering max under load never corrupts the count" do
          name = unique_name(:lower)
          {pid, results} = holder(@semaphore, name, 10, 10)
          assert Enum.all?(results)
          refute @semaphore.acquire(name, 5)
          assert @semaphore.count(name) == 10

          # Load with the lower max while the old holders leave.
          parent = self()

          workers =
            for _ <- 1..8 do
              spawn_link(fn ->
                for _ <- 1..200 do
                  if @semaphore.acquire(name, 5) do
                    assert @semaphore.count(name) <= 10
                    @semaphore.release(name)
                  end
                end

                send(parent, {:done, self()})
              end)
            end

          Process.exit(pid, :kill)
          for worker <- workers, do: assert_receive({:done, ^worker}, 10_000)
          wait_for_count(@semaphore, name, 0, 1_000_000)
          {_pid, results} = holder(@semaphore, name, 5, 6)
          assert Enum.count(results, & &1) == 5
          assert @semaphore.count(name) == 5
        end
      end
    end
  end
end
