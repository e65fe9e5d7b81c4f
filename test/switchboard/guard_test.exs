defmodule Switchboard.GuardTest do
  # Changes the application's :guard settings: runs alone.
  use ExUnit.Case, async: false

  alias Switchboard.{Guard, Guild, Metrics, Semaphore, Session}

  @moduletag timeout: 120_000

  setup do
    saved = Application.get_env(:switchboard, :guard)
    on_exit(fn -> restore(saved) end)
  end

  defp restore(nil), do: Application.delete_env(:switchboard, :guard)
  defp restore(saved), do: Application.put_env(:switchboard, :guard, saved)

  defp busy(kind),
    do: Map.get(Metrics.snapshot().counters, {"switchboard.guard.busy", [kind: kind]}, 0)

  defp wait_until(fun, tries \\ 500) do
    cond do
      fun.() -> :ok
      tries == 0 -> flunk("condition never held")
      true -> Process.sleep(5) && wait_until(fun, tries - 1)
    end
  end

  # The most slots of `name` seen in use until told to stop.
  defp peak(name, seen) do
    seen = max(seen, Semaphore.count(name))

    receive do
      :stop -> seen
    after
      0 -> peak(name, seen)
    end
  end

  test "a stampede of sessions attaching at once: never more than max calls at the guild, all attached" do
    max = 8
    count = 2_000
    # Retries enough for a loaded machine: the test is about the bound.
    Application.put_env(:switchboard, :guard, guild: max, retries: 400, max_backoff_ms: 50)
    guild = start_supervised!({Guild, id: {:stampede, System.unique_integer([:positive])}})
    name = Guard.name(:guild, guild)
    busy_before = busy(:guild)

    # A guild that answers nothing: the calls in flight pile up in its mailbox.
    :ok = :sys.suspend(guild)
    sessions = for _ <- 1..count, do: start_supervised!({Session, []}, id: make_ref())
    attaching = for s <- sessions, do: Task.async(fn -> Session.attach(s, guild) end)

    # The holders' calls reach the mailbox just after their slots are taken.
    wait_until(fn ->
      Semaphore.count(name) == max and
        Process.info(guild, :message_queue_len) == {:message_queue_len, max}
    end)

    # The others back off and retry; while the guild is stuck, exactly
    # `max` of them are waiting on it, never more.
    for _ <- 1..10 do
      assert {:message_queue_len, max} == Process.info(guild, :message_queue_len)
      assert Semaphore.count(name) == max
      Process.sleep(10)
    end

    assert busy(:guild) > busy_before
    :ok = :sys.resume(guild)

    # A sampler watches the slots while the stampede drains.
    sampler = Task.async(fn -> peak(name, 0) end)

    assert Enum.map(attaching, &Task.await(&1, 60_000)) == List.duplicate(:ok, count)
    send(sampler.pid, :stop)
    assert Task.await(sampler) <= max
    assert Guild.stats(guild).sessions == count
    assert Semaphore.count(name) == 0
  end

  test "a guarded call gives up after its retries with {:error, :busy}, counted" do
    Application.put_env(:switchboard, :guard, registry: 0, retries: 2, max_backoff_ms: 1)

    before =
      Map.get(Metrics.snapshot().counters, {"switchboard.guard.gave_up", [kind: :registry]}, 0)

    assert Guard.call(:registry, :anything, fn -> :ran end) == {:error, :busy}

    after_ =
      Map.get(Metrics.snapshot().counters, {"switchboard.guard.gave_up", [kind: :registry]}, 0)

    assert after_ == before + 1
    Application.put_env(:switchboard, :guard, registry: 1)
    assert Guard.call(:registry, :anything, fn -> :ran end) == :ran
  end

  test "the backoff grows, is jittered and is capped" do
    config = Keyword.merge(Guard.config(), backoff_ms: 2, max_backoff_ms: 40)
    first = for _ <- 1..200, do: Guard.backoff(config, 0)
    late = for _ <- 1..200, do: Guard.backoff(config, 10)
    assert Enum.all?(first, &(&1 in 1..3))
    assert Enum.all?(late, &(&1 in 20..60))
    assert length(Enum.uniq(late)) > 5
  end
end
