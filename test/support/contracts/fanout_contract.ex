defmodule Switchboard.Contracts.FanoutContract do
  @moduledoc false
  # The one test suite of the Switchboard.Fanout.Behaviour and
  # Switchboard.Fanout.GroupBehaviour contracts, run by both twins:
  #
  #     use Switchboard.Contracts.FanoutContract,
  #       implementation: Switchboard.Fanout,
  #       group: Switchboard.Fanout.Group
  #
  # Inside, `Subject` is the fan-out and `SubjectGroup` its group. What the
  # twins count differently (a dead local pid: skipped natively, delivered
  # by send/2 in the pure twin) is tested in each implementation's file.

  defmacro __using__(opts) do
    implementation = Keyword.fetch!(opts, :implementation)
    group = Keyword.fetch!(opts, :group)

    quote location: :keep do
      use Switchboard.Property
      import Switchboard.Test.Receivers

      alias unquote(implementation), as: Subject
      alias unquote(group), as: SubjectGroup

      # A pid of a node that does not exist (NEW_PID_EXT).
      defp contract_remote_pid do
        node = "other@nowhere"

        :erlang.binary_to_term(
          <<131, 88, 119, byte_size(node), node::binary, 1::32, 0::32, 1::32>>
        )
      end

      describe "contract: send/3" do
        test "every receiver gets the message once; nils are skipped and counted" do
          [a, b, c] = receivers(3)

          assert Subject.send([a, nil, b, c, nil], {:hello, 1}) == %{
                   local: 3,
                   remote: 0,
                   skipped: 2
                 }

          for pid <- [a, b, c], do: assert(mailbox(pid) == [{:hello, 1}])
          kill_all([a, b, c])
        end

        test "a pid listed twice gets the message twice; an empty list sends nothing" do
          [a] = receivers(1)
          assert %{local: 2} = Subject.send([a, a], :twice)
          assert mailbox(a) == [:twice, :twice]
          assert Subject.send([], :nothing) == %{local: 0, remote: 0, skipped: 0}

          assert Subject.send([nil], :nothing, offload: true) == %{
                   local: 0,
                   remote: 0,
                   skipped: 1
                 }

          kill_all([a])
        end

        test "receivers get the original term, in every mode" do
          pids = receivers(4)

          message = %{
            text: "hi",
            blob: :binary.copy("x", 100_000),
            nested: [{1, 2.5}, %{me: self()}]
          }

          modes = [[], [offload: true], [pack: :binary], [offload: true, pack: :binary]]

          for {pid, opts} <- Enum.zip(pids, modes) do
            assert %{local: 1} = Subject.send([pid], message, opts)
          end

          assert Subject.sync() == :ok
          for pid <- pids, do: assert(mailbox(pid) == [message])
          kill_all(pids)
        end

        test "deliver: :packed sends one shared encoding; unpack/1 gives the message back" do
          [a, b] = receivers(2)
          message = %{"op" => 0, "d" => %{"content" => String.duplicate("x", 200)}}
          assert %{local: 2} = Subject.send([a, b], message, deliver: :packed)
          assert %{local: 1} = Subject.send([a], message, deliver: :packed, offload: true)
          Subject.sync()

          for pid <- [a, b], packed <- mailbox(pid) do
            assert {:switchboard_packed, bytes} = packed
            assert bytes == :erlang.term_to_binary(message)
            assert Subject.unpack(packed) == message
            assert Subject.unpack(bytes) == message
          end

          assert length(mailbox(a)) == 2 and length(mailbox(b)) == 1
          kill_all([a, b])
        end

        test "one sender's fan-outs arrive in order whatever the mix of modes" do
          pids = receivers(200)
          modes = [[], [offload: true], [pack: :binary], [offload: true, pack: :binary]]
          for n <- 1..150, do: Subject.send(pids, n, Enum.at(modes, rem(n * 7, 4)))
          assert Subject.sync() == :ok
          assert Enum.all?(pids, &(mailbox(&1) == Enum.to_list(1..150)))
          kill_all(pids)
        end
      end

      describe "contract: bad input" do
        test "a bad receiver list is an ArgumentError naming the term; nothing is sent" do
          long = receivers(10_000)

          for opts <- [[], [offload: true]] do
            for {bad, message} <- [
                  {:foo, "expected a list of pids, got: :foo"},
                  {"pids", ~s(expected a list of pids, got: "pids")},
                  {[self() | :foo], "expected the end of the list of pids to be [], got: :foo"},
                  {[nil | 7], "expected the end of the list of pids to be [], got: 7"},
                  {[self(), {:not, :a, :pid}],
                   "expected a pid or nil in the receiver list, got: {:not, :a, :pid}"}
                ] do
              assert_raise ArgumentError, message, fn -> Subject.send(bad, :msg, opts) end
            end

            # Far down a long list too, after the first slices would have run.
            assert_raise ArgumentError,
                         "expected a pid or nil in the receiver list, got: 42",
                         fn -> Subject.send(long ++ [42], :msg, opts) end
          end

          Subject.sync()
          assert Enum.all?(long, &(mailbox(&1) == []))
          kill_all(long)
        end

        test "unknown or malformed options raise, naming the option" do
          assert_raise ArgumentError, ~r/unknown keys \[:pack_mode\]/, fn ->
            Subject.send([], :msg, pack_mode: :binary)
          end

          for {opts, message} <- [
                {[pack: :zip], "expected :pack to be :binary or nil, got: :zip"},
                {[offload: 1], "expected :offload to be a boolean, got: 1"},
                {[deliver: :nope], "expected :deliver to be :term or :packed, got: :nope"},
                {:offload, "expected fan-out options to be a keyword list, got: :offload"}
              ] do
            assert_raise ArgumentError, message, fn -> Subject.send([self()], :msg, opts) end
          end
        end
      end

      describe "contract: groups" do
        test "membership: add, remove, member?, size, to_list" do
          [a, b, c] = receivers(3)
          group = SubjectGroup.new([a, b, a])
          assert SubjectGroup.size(group) == 2
          assert SubjectGroup.member?(group, a) and not SubjectGroup.member?(group, c)
          assert SubjectGroup.add(group, c) == group
          assert SubjectGroup.add(group, c) == group
          assert Enum.sort(SubjectGroup.to_list(group)) == Enum.sort([a, b, c])
          assert SubjectGroup.remove(group, a) == group
          assert SubjectGroup.remove(group, a) == group
          assert Enum.sort(SubjectGroup.to_list(group)) == Enum.sort([b, c])
          assert SubjectGroup.size(SubjectGroup.new()) == 0
          kill_all([a, b, c])
        end

        test "bad input raises ArgumentError naming the term" do
          remote = contract_remote_pid()

          for {bad, message} <- [
                {[self(), :x], "expected a local pid in the group's member list, got: :x"},
                {:x, "expected a list of pids, got: :x"},
                {[self() | :tail], "expected the end of the list of pids to be [], got: :tail"}
              ] do
            assert_raise ArgumentError, message, fn -> SubjectGroup.new(bad) end
          end

          assert_raise ArgumentError,
                       ~r/^expected a local pid in the group's member list, got: #PID/,
                       fn -> SubjectGroup.new([remote]) end

          group = SubjectGroup.new()

          for {call, message} <- [
                {&SubjectGroup.add(&1, 1), "expected a local pid, got: 1"},
                {&SubjectGroup.remove(&1, nil), "expected a local pid, got: nil"},
                {&SubjectGroup.member?(&1, :a), "expected a local pid, got: :a"}
              ] do
            assert_raise ArgumentError, message, fn -> call.(group) end
          end

          assert_raise ArgumentError, ~r/^expected a local pid, got: #PID/, fn ->
            SubjectGroup.add(group, remote)
          end

          for {call, term} <- [
                {&SubjectGroup.size/1, %{}},
                {&SubjectGroup.add(&1, self()), []},
                {&SubjectGroup.to_list/1, :nope}
              ] do
            message = "expected a #{inspect(SubjectGroup)}, got: #{inspect(term)}"
            assert_raise ArgumentError, message, fn -> call.(term) end
          end

          assert_raise ArgumentError, "expected :offload to be a boolean, got: :yes", fn ->
            Subject.send(group, :m, offload: :yes)
          end
        end

        test "inline and offloaded fan-outs reach every member, in order" do
          members = receivers(50)
          group = SubjectGroup.new(members)
          assert %{local: 50, remote: 0, skipped: 0} = Subject.send(group, 1)
          assert %{local: 50} = Subject.send(group, 2, offload: true)
          assert %{local: 50} = Subject.send(members, 3, offload: true)
          assert %{local: 50} = Subject.send(group, 4)
          assert %{local: 50} = Subject.send(group, 5, offload: true, deliver: :packed)
          assert :ok = Subject.sync()

          for pid <- members do
            assert [1, 2, 3, 4, packed] = mailbox(pid)
            assert Subject.unpack(packed) == 5
          end

          kill_all(members)
        end

        test "a fan-out keeps the members it started with" do
          members = receivers(200)
          group = SubjectGroup.new(members)
          Subject.send(group, :before_removal, offload: true)
          Enum.each(members, &SubjectGroup.remove(group, &1))
          assert SubjectGroup.size(group) == 0
          Subject.sync()
          for pid <- members, do: assert(mailbox(pid) == [:before_removal])
          assert Subject.send(group, :nobody) == %{local: 0, remote: 0, skipped: 0}
          kill_all(members)
        end
      end

      describe "contract: against the model" do
        # A scenario: a few receivers, lists drawn from them (with repeats),
        # dead pids and nils, and a sequence of sends with random options.
        defp contract_slot, do: oneof([integer(0, 5), exactly(:dead), exactly(nil)])

        defp contract_options do
          oneof([
            exactly([]),
            exactly(offload: true),
            exactly(pack: :binary),
            exactly(offload: true, pack: :binary)
          ])
        end

        # {summaries, mailboxes} of `implementation` for the sends.
        defp run_scenario(implementation, sends) do
          live = receivers(6)
          dead = dead_pid()

          resolve = fn slots ->
            Enum.map(slots, fn
              :dead -> dead
              nil -> nil
              i -> Enum.at(live, i)
            end)
          end

          summaries =
            for {{slots, opts}, n} <- Enum.with_index(sends) do
              implementation.send(resolve.(slots), {:m, n}, opts)
            end

          implementation.sync()
          mailboxes = Enum.map(live, &mailbox/1)
          kill_all(live)
          {summaries, mailboxes}
        end

        # What each of the receivers holds after the sends.
        defp model_mailboxes(sends) do
          for receiver <- 0..5 do
            for {{slots, _opts}, n} <- Enum.with_index(sends),
                _ <- Enum.filter(slots, &(&1 == receiver)),
                do: {:m, n}
          end
        end

        property_test "every receiver gets each message exactly once, in order", numtests: 40 do
          forall sends <- list(tuple([list(contract_slot()), contract_options()])) do
            {summaries, mailboxes} = run_scenario(Subject, sends)

            mailboxes == model_mailboxes(sends) and
              Enum.map(summaries, & &1.remote) == Enum.map(sends, fn _ -> 0 end)
          end
        end
      end
    end
  end
end
