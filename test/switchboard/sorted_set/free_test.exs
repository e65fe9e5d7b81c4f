defmodule Switchboard.SortedSet.FreeTest do
  # Not async: it reads the library-wide allocation counter.
  use ExUnit.Case, async: false

  alias Switchboard.NIF
  alias Switchboard.SortedSet

  defp eventually(fun, tries \\ 200) do
    cond do
      fun.() -> true
      tries == 0 -> false
      true -> Process.sleep(25) && eventually(fun, tries - 1)
    end
  end

  test "a large set is freed by the reply thread once its last reference is gone" do
    before = Switchboard.native_allocated_bytes()
    jobs_before = NIF.library_info().reply_jobs_completed
    parent = self()

    {owner, ref} =
      spawn_monitor(fn ->
        set = SortedSet.from_enumerable(1..100_000)
        send(parent, {:holding, Switchboard.native_allocated_bytes(), SortedSet.size(set)})
        receive do: (:drop -> :ok)
      end)

    assert_receive {:holding, holding, 100_000}, 30_000
    assert holding - before > 1_000_000
    send(owner, :drop)
    assert_receive {:DOWN, ^ref, _, _, _}, 10_000

    assert eventually(fn -> NIF.library_info().reply_jobs_completed > jobs_before end)
    assert eventually(fn -> Switchboard.native_allocated_bytes() - before < 500_000 end)
  end

  test "a small set is freed where it is collected" do
    before = Switchboard.native_allocated_bytes()

    {_, ref} = spawn_monitor(fn -> SortedSet.from_enumerable(1..1000) |> SortedSet.size() end)

    assert_receive {:DOWN, ^ref, _, _, _}, 10_000
    assert eventually(fn -> Switchboard.native_allocated_bytes() - before < 16_000 end)
  end

  test "a set held as an item lives while the outer set holds it, and no longer" do
    before = Switchboard.native_allocated_bytes()
    outer = SortedSet.new()

    {_, ref} =
      spawn_monitor(fn -> SortedSet.add(outer, {:inner, SortedSet.from_enumerable(1..50_000)}) end)

    assert_receive {:DOWN, ^ref, _, _, _}, 10_000
    :erlang.garbage_collect()
    # The creator is gone and no process holds the inner set: the item does.
    assert Switchboard.native_allocated_bytes() - before > 500_000
    assert [{:inner, inner}] = SortedSet.to_list(outer)
    assert SortedSet.size(inner) == 50_000

    inner = nil
    _ = inner

    {_, nil} =
      SortedSet.remove_at(outer, 0) |> then(fn {_, set} -> {set, SortedSet.at(set, 0)} end)

    :erlang.garbage_collect()
    assert eventually(fn -> Switchboard.native_allocated_bytes() - before < 100_000 end)
  end
end
