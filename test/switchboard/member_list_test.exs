defmodule Switchboard.MemberListTest do
  use ExUnit.Case, async: true
  use Switchboard.Contracts.MemberListContract, implementation: Switchboard.MemberList

  alias Switchboard.Contracts.MemberListContract, as: Contract
  alias Switchboard.MemberList
  alias Switchboard.MemberList.Pure

  doctest Switchboard.MemberList

  test "native and twin return identical updates and items over random streams" do
    Contract.check_streams!([MemberList, Pure], 300)
  end

  describe "terms kept natively" do
    test "ids of any type come back as given, through churn that compacts the term store" do
      ids = for i <- 1..6000, do: {"user", i, make_ref()}
      session = {:session, self(), "s"}

      list =
        Enum.reduce(ids, MemberList.new(), fn id, list ->
          elem(
            MemberList.put(list, %{id: id, name: "x", status: :online, hoist: {1, {:role, "r"}}}),
            1
          )
        end)

      {[{[^session], [{:sync, [0, 2], [{:group, {:role, "r"}, 6000}, {:member, first}, _]}]}],
       list} = MemberList.subscribe(list, session, [[0, 2]])

      assert first == Enum.min(ids)
      # Deleting 5,990 members leaves more dead copies than live ones.
      list = Enum.reduce(Enum.drop(Enum.sort(ids), 10), list, &elem(MemberList.delete(&2, &1), 1))

      assert MemberList.items(list) == [
               {:group, {:role, "r"}, 10}
               | Enum.map(Enum.take(Enum.sort(ids), 10), &{:member, &1})
             ]

      {updates, _} =
        MemberList.put(list, %{id: "z", name: "a", status: :dnd, hoist: {1, {:role, "r"}}})

      assert updates == [
               {[session],
                [
                  {:update, 0, {:group, {:role, "r"}, 11}},
                  {:delete, 2},
                  {:insert, 1, {:member, "z"}}
                ]}
             ]

      assert MemberList.counts(list).member_count == 11
      assert MemberList.memory(list) > 0
    end

    test "a list of another kind is refused" do
      assert_raise ArgumentError, ~r/expected a Switchboard.MemberList, got: :nope/, fn ->
        MemberList.items(:nope)
      end
    end

    test "two processes may share a list" do
      list = MemberList.new()

      tasks =
        for t <- 1..4 do
          Task.async(fn ->
            for i <- 1..500,
                do: MemberList.put(list, %{id: {t, i}, name: "n#{i}", status: :online})
          end)
        end

      Enum.each(tasks, &Task.await/1)
      assert MemberList.counts(list).member_count == 2000
      assert MemberList.size(list) == 2001
    end
  end
end
