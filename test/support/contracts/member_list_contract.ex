defmodule Switchboard.Contracts.MemberListContract do
  @moduledoc false
  # One suite for every implementation of Switchboard.MemberList.Behaviour:
  #
  #     use Switchboard.Contracts.MemberListContract, implementation: Switchboard.MemberList

  defmacro __using__(opts) do
    quote do
      use Switchboard.Property
      alias Switchboard.MemberListModel, as: Model
      alias Switchboard.Contracts.MemberListContract, as: Contract

      @ml unquote(opts[:implementation])

      defp m(id, name, status, hoist \\ nil),
        do: %{id: id, name: name, status: status, hoist: hoist}

      defp put_all(list, members) do
        Enum.reduce(members, list, fn member, list -> elem(@ml.put(list, member), 1) end)
      end

      describe "#{inspect(@ml)}: the list" do
        test "groups: hoisted roles by position (highest first, then role id), online, offline" do
          list =
            put_all(@ml.new(), [
              m(1, "zed", :online),
              m(2, "amy", :offline, {9, :admin}),
              m(3, "bob", :idle, {5, :mod}),
              m(4, "cat", :dnd, {9, :admin}),
              m(5, "ann", :online, {5, :helper}),
              m(6, "ann", :online),
              m(7, "ann", :online, {5, :helper})
            ])

          assert @ml.items(list) == [
                   {:group, :admin, 1},
                   {:member, 4},
                   {:group, :helper, 2},
                   {:member, 5},
                   {:member, 7},
                   {:group, :mod, 1},
                   {:member, 3},
                   {:group, "online", 2},
                   {:member, 6},
                   {:member, 1},
                   {:group, "offline", 1},
                   {:member, 2}
                 ]

          assert @ml.size(list) == 12
          assert @ml.member_index(list, 7) == 4
          assert @ml.member_index(list, 2) == 11
          assert @ml.member_index(list, :nobody) == nil

          assert @ml.counts(list) == %{
                   member_count: 7,
                   online_count: 6,
                   groups: [{:admin, 1}, {:helper, 2}, {:mod, 1}, {"online", 2}, {"offline", 1}]
                 }
        end

        test "names compare as bytes, then user ids in term order" do
          list =
            put_all(@ml.new(), [
              m(2, "b", :online),
              m(1, "b", :online),
              m(:x, "B", :online),
              m(0, "ba", :online)
            ])

          assert @ml.items(list) == [
                   {:group, "online", 4},
                   {:member, :x},
                   {:member, 1},
                   {:member, 2},
                   {:member, 0}
                 ]
        end

        test "offline: :hidden leaves offline members out but counts them" do
          list = put_all(@ml.new(offline: :hidden), [m(1, "a", :offline), m(2, "b", :online)])
          assert @ml.items(list) == [{:group, "online", 1}, {:member, 2}]
          assert @ml.member_index(list, 1) == nil
          assert @ml.counts(list) == %{member_count: 2, online_count: 1, groups: [{"online", 1}]}
          assert {[], list} = @ml.delete(list, 1)
          assert @ml.counts(list).member_count == 1
        end

        test "delete of an absent member changes nothing" do
          list = put_all(@ml.new(), [m(1, "a", :online)])
          assert {[], list} = @ml.delete(list, 2)
          assert @ml.items(list) == [{:group, "online", 1}, {:member, 1}]
        end

        test "bad arguments raise ArgumentError naming them" do
          assert_raise ArgumentError,
                       ~r/expected :offline to be :listed or :hidden, got: :maybe/,
                       fn ->
                         @ml.new(offline: :maybe)
                       end

          assert_raise ArgumentError, ~r/expected a member .* got: %{id: 1}/, fn ->
            @ml.put(@ml.new(), %{id: 1})
          end

          assert_raise ArgumentError, ~r/got: %{.*status: :away/, fn ->
            @ml.put(@ml.new(), m(1, "a", :away))
          end
        end
      end

      describe "#{inspect(@ml)}: subscriptions" do
        test "subscribe syncs new ranges (list may end inside), re-subscribing changes nothing" do
          list = put_all(@ml.new(), [m(1, "a", :online), m(2, "b", :online)])
          {updates, list} = @ml.subscribe(list, :s, [[0, 99]])

          assert updates == [
                   {[:s], [{:sync, [0, 99], [{:group, "online", 2}, {:member, 1}, {:member, 2}]}]}
                 ]

          assert {[], ^list} = @ml.subscribe(list, :s, [[0, 99]])

          {updates, list} = @ml.subscribe(list, :s, [[0, 99], [100, 199]])
          assert updates == [{[:s], [{:sync, [100, 199], []}]}]
          {updates, _list} = @ml.subscribe(list, :s, [[1, 2]])

          assert updates == [
                   {[:s],
                    [
                      {:invalidate, [0, 99]},
                      {:invalidate, [100, 199]},
                      {:sync, [1, 2], [{:member, 1}, {:member, 2}]}
                    ]}
                 ]
        end

        test "ranges are validated" do
          list = @ml.new()

          for bad <- [
                [[0, 100]],
                [[5, 4]],
                [[-1, 3]],
                [[0, 10], [10, 20]],
                [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]],
                [{0, 1}],
                [[0, 1, 2]],
                :all
              ] do
            message =
              "expected ranges to be a list of at most 5 non-overlapping [first, last] with " <>
                "0 <= first <= last and at most 100 items each, got: #{inspect(bad)}"

            assert_raise ArgumentError, message, fn -> @ml.subscribe(list, :s, bad) end
          end
        end

        test "unsubscribe returns no updates and the session hears nothing more" do
          list = put_all(@ml.new(), [m(1, "a", :online)])
          {_, list} = @ml.subscribe(list, :s, [[0, 9]])
          assert {[], list} = @ml.unsubscribe(list, :s)
          assert {[], _} = @ml.put(list, m(2, "b", :online))
        end

        test "a change in place is an update of the member's entry; sessions share entries" do
          list = put_all(@ml.new(), [m(1, "a", :online), m(2, "c", :online), m(3, "e", :offline)])
          {_, list} = @ml.subscribe(list, :late, [[0, 9]])
          {_, list} = @ml.subscribe(list, :top, [[0, 1]])
          {_, list} = @ml.subscribe(list, :early, [[0, 9]])
          {_, list} = @ml.subscribe(list, :bottom, [[4, 5]])

          {updates, list} = @ml.put(list, m(2, "b", :dnd))
          assert updates == [{[:late, :early], [{:update, 2, {:member, 2}}]}]

          {updates, _list} = @ml.put(list, m(4, "0", :online))

          assert updates == [
                   {[:late, :early],
                    [{:update, 0, {:group, "online", 3}}, {:insert, 1, {:member, 4}}]},
                   {[:top], [{:update, 0, {:group, "online", 3}}, {:update, 1, {:member, 4}}]},
                   {[:bottom], [{:insert, 4, {:group, "offline", 1}}]}
                 ]
        end
      end

      describe "#{inspect(@ml)}: long lists and full windows" do
        test "windows of 100 over a list of 400 stay exact through joins, leaves and flips" do
          :rand.seed(:exsss, {7, 7, 7})

          state =
            Model.new([@ml])
            |> Model.step!({:subscribe, :a, [[0, 99], [100, 199]]})
            |> Model.step!({:subscribe, :b, [[150, 249], [300, 399]]})
            |> Model.step!({:subscribe, :c, [[0, 99]]})

          Enum.reduce(1..400, state, fn _step, state ->
            id = :rand.uniform(300)

            command =
              case :rand.uniform(10) do
                n when n <= 6 ->
                  {:put,
                   m(
                     id,
                     "n#{:rand.uniform(50)}",
                     Enum.random([:online, :idle, :offline, :offline]),
                     Enum.random([nil, nil, {1, :r1}, {3, :r3}])
                   )}

                n when n <= 8 ->
                  {:delete, id}

                _ ->
                  {:subscribe, Enum.random([:a, :b, :d]),
                   Enum.random([[[0, 99]], [[200, 299]], [[50, 149], [250, 349]]])}
              end

            Model.step!(state, command)
          end)
        end
      end

      describe "#{inspect(@ml)}: model clients" do
        test "every client's ranges equal the list after every call" do
          Contract.check_streams!([@ml], 150)
        end
      end
    end
  end

  @doc """
  Runs random streams of calls on every implementation in `impls` (the first
  one's updates are compared with the others'), judged by the model after
  each call. Old PropEr cannot report an exception raised inside a property,
  so a failed assertion is kept and re-raised with the shrunk stream.
  """
  def check_streams!(impls, numtests) do
    property =
      :proper.forall({hidden(), commands()}, fn {hidden, commands} ->
        try do
          state =
            Switchboard.MemberListModel.new(impls, offline: if(hidden, do: :hidden, else: :listed))

          Enum.reduce(commands, state, &Switchboard.MemberListModel.step!(&2, &1))
          true
        rescue
          error ->
            Process.put(:member_list_failure, Exception.message(error))
            false
        end
      end)

    try do
      Switchboard.Property.check!(property, numtests: numtests, max_size: 60)
    rescue
      error in ExUnit.AssertionError ->
        reraise ExUnit.AssertionError,
                [
                  message:
                    error.message <>
                      "\nlast failure: " <> to_string(Process.get(:member_list_failure))
                ],
                __STACKTRACE__
    end
  end

  ## Generators, shared with the differential property.

  def hidden, do: :proper_types.boolean()

  def commands, do: :proper_types.list(command())

  def command do
    :proper_types.frequency([
      {6, :proper_types.bind(member(), &{:put, &1}, false)},
      {2, :proper_types.bind(user_id(), &{:delete, &1}, false)},
      {2, :proper_types.bind({session(), ranges()}, fn {s, r} -> {:subscribe, s, r} end, false)},
      {1, :proper_types.bind(session(), &{:unsubscribe, &1}, false)}
    ])
  end

  def user_id, do: :proper_types.integer(1, 14)
  def session, do: :proper_types.elements([:s1, :s2, :s3, :s4, :s5])

  def member do
    :proper_types.bind(
      {user_id(), :proper_types.elements(["a", "b", "c", "bb", ""]),
       :proper_types.elements([:online, :idle, :dnd, :offline, :offline]),
       :proper_types.elements([nil, nil, {1, :r1}, {2, :r2}, {2, :r0}])},
      fn {id, name, status, hoist} -> %{id: id, name: name, status: status, hoist: hoist} end,
      false
    )
  end

  # Up to 3 non-overlapping ranges (gaps may be 0: adjacent ranges), small
  # enough that lists of a dozen members end inside or between them.
  def ranges do
    :proper_types.bind(
      :proper_types.resize(
        3,
        :proper_types.list({:proper_types.integer(0, 6), :proper_types.integer(1, 6)})
      ),
      fn pieces ->
        {ranges, _} =
          Enum.map_reduce(Enum.take(pieces, 3), 0, fn {gap, length}, start ->
            first = start + gap
            {[first, first + length - 1], first + length}
          end)

        ranges
      end,
      false
    )
  end
end
