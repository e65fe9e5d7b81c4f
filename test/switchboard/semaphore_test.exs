defmodule Switchboard.SemaphoreTest do
  use ExUnit.Case, async: true

  use Switchboard.Contracts.SemaphoreContract,
    implementation: Switchboard.Semaphore,
    free_within_us: 1_000

  import Bitwise
  alias Switchboard.Semaphore

  doctest Switchboard.Semaphore

  test "a holder that acquires and releases in a loop is monitored once" do
    name = {:loop, System.unique_integer()}

    for _ <- 1..1000 do
      assert Semaphore.acquire(name, 1)
      Semaphore.release(name)
    end

    assert Semaphore.holder_info(name) == {1, 1}
  end

  test "idle holders past the limit are forgotten; dead ones always" do
    name = {:idle, System.unique_integer()}
    parent = self()

    pids =
      for _ <- 1..100 do
        spawn(fn ->
          true = Semaphore.acquire(name, 1000)
          Semaphore.release(name)
          send(parent, :released)
          Process.sleep(:infinity)
        end)
      end

    for _ <- pids, do: assert_receive(:released)
    assert Semaphore.holder_info(name) == {64, 64}
    Enum.each(pids, &Process.exit(&1, :kill))
    Process.sleep(20)
    assert Semaphore.holder_info(name) == {0, 0}
    assert Semaphore.count(name) == 0
  end

  # The twin adds then takes back, so its count may read above max for an
  # instant; the native count never does.
  test "count never reads above max while processes race" do
    name = {:race_count, System.unique_integer()}
    parent = self()

    workers =
      for _ <- 1..16 do
        spawn_link(fn ->
          for _ <- 1..500 do
            if Semaphore.acquire(name, 3) do
              assert Semaphore.count(name) <= 3
              Semaphore.release(name)
            end
          end

          send(parent, {:done, self()})
        end)
      end

    for pid <- workers, do: assert_receive({:done, ^pid}, 10_000)
    assert Semaphore.count(name) == 0
  end

  test "a max past 64 bits is no limit" do
    name = {:huge_max, System.unique_integer()}
    assert Semaphore.acquire(name, 1 <<< 70)
    assert Semaphore.count(name) == 1
  end
end
