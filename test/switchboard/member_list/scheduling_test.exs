defmodule Switchboard.MemberList.SchedulingTest do
  # Not async: SchedulerHold uses the node-wide system monitor, and the work
  # budget is global to the library.
  use ExUnit.Case, async: false

  alias Switchboard.Contracts.MemberListContract, as: Contract
  alias Switchboard.MemberList
  alias Switchboard.MemberList.Pure
  alias Switchboard.NIF
  alias Switchboard.Test.SchedulerHold

  @members 300_000
  @sessions 60_000
  @ranges_per_session 5

  # A change at the top of a list shifts every subscribed range below it.
  # 300k one-item ranges (60k sessions of five each, all distinct) make such
  # a change ~40-60 ms of ops and terms (measured inline: 2-3 times the
  # threshold below): it must count that work first and run dirty. Only
  # summaries leave the measured process: sending the updates themselves
  # (megabytes) would be a long copy of its own.
  @threshold_ms 20
  describe "a change that shifts many ranges stays off the normal schedulers" do
    setup do
      list =
        Enum.reduce(1..@members, MemberList.new(), fn i, list ->
          member = %{id: i, name: "m" <> String.pad_leading("#{i}", 7, "0"), status: :online}
          elem(MemberList.put(list, member), 1)
        end)

      stride = div(@members, @ranges_per_session)

      list =
        Enum.reduce(1..@sessions, list, fn s, list ->
          ranges = for j <- 0..(@ranges_per_session - 1), do: [j * stride + s, j * stride + s]
          elem(MemberList.subscribe(list, s, ranges), 1)
        end)

      %{list: list, stride: stride}
    end

    test "a join, a rename and a leave near the top, each telling every session", %{
      list: list,
      stride: stride
    } do
      summary = fn {updates, list} -> {length(updates), List.first(updates), list} end

      {held, {joined, renamed, left}} =
        SchedulerHold.measure(
          fn ->
            {joined, first, list} =
              summary.(MemberList.put(list, %{id: 0, name: "a", status: :online}))

            {renamed, _, list} =
              summary.(MemberList.put(list, %{id: 0, name: "z", status: :online}))

            {left, _, _list} = summary.(MemberList.delete(list, 1))
            {{joined, first}, renamed, left}
          end,
          threshold_ms: @threshold_ms
        )

      assert held == nil
      assert {@sessions, @sessions} == {renamed, left}
      assert {@sessions, {[1], ops}} = joined

      # Session 1 holds [1, 1], [stride + 1, stride + 1], ...: the join at
      # index 1 (under the header) shows the new member in its first range
      # and pulls the item above into each of the others.
      assert ops == [
               {:update, 1, {:member, 0}}
               | for(
                   j <- 1..(@ranges_per_session - 1),
                   do: {:update, j * stride + 1, {:member, j * stride}}
                 )
             ]

      assert MemberList.size(list) == @members + 1
    end
  end

  # Growing the member table (a reallocation, a rehash) moves every entry:
  # building 1M members inline held a scheduler 91, 88, 45 and 38 ms at its
  # largest growths. The put that would grow a large table runs dirty.
  test "building a 1M-member list holds no normal scheduler" do
    {held, size} =
      SchedulerHold.measure(fn ->
        list =
          Enum.reduce(1..1_000_000, MemberList.new(offline: :hidden), fn i, list ->
            member = %{
              id: i,
              name: "m#{i}",
              status: if(rem(i, 3) == 0, do: :online, else: :offline)
            }

            elem(MemberList.put(list, member), 1)
          end)

        MemberList.counts(list).member_count
      end)

    assert held == nil
    assert size == 1_000_000
  end

  # With the budget shrunk to one byte every change that tells anyone runs
  # dirty: the updates must not change.
  describe "changes run dirty" do
    setup do
      previous = NIF.set_work_budget(1)
      on_exit(fn -> NIF.set_work_budget(:default) end)
      %{previous: previous}
    end

    test "native and twin return identical updates over random streams" do
      Contract.check_streams!([MemberList, Pure], 100)
    end
  end
end
