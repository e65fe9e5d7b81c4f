defmodule Switchboard.Test.FanoutOrder do
  @moduledoc false
  # Many callers making interleaved fan-outs of every kind (inline and
  # offloaded, lists and groups, packed or not) to the same receivers, for
  # the order and summary checks of test/switchboard/fanout/parallel_test.exs.
  # Runs on whichever node calls it (a :peer node with several sender
  # threads, say), so it lives in test/support, which peers load.
  alias Switchboard.Fanout

  @kinds [:inline, :offload, :inline_packed, :offload_packed, :group, :group_offload]

  @doc """
  Runs `callers` processes, each making `fanouts` fan-outs to random
  subsets of `size` fresh local receivers (with nils, dead pids, duplicates
  and the given `remote` pids mixed in), and returns

      %{mailboxes: [{pid, messages}], expected: %{pid => [message]},
        wrong_summaries: [...], kinds: %{kind => count}}

  (`expected` covers the remote pids too; compare with `in_order?/2`).
  Every message is `{caller, n}`.
  """
  def run(callers, fanouts, size, remote, seed) do
    :rand.seed(:exsss, {seed, seed, seed})
    receivers = spawn_sleepers(size)
    dead = for _ <- 1..5, do: dead_pid()
    group = Fanout.Group.new(receivers ++ dead)
    plans = for caller <- 1..callers, do: plan(caller, fanouts, receivers, dead, remote)
    parent = self()

    pids =
      for {caller, sends} <- plans do
        spawn_link(fn ->
          summaries = Enum.map(sends, &fan_out(&1, group))
          # Everything offloaded is delivered before the mailboxes are read.
          Fanout.sync()
          send(parent, {:done, caller, summaries})
        end)
      end

    results =
      for {caller, _} <- plans, into: %{} do
        receive do
          {:done, ^caller, results} -> {caller, results}
        end
      end

    wrong =
      for {caller, sends} <- plans,
          {{message, kind, list, expected}, got} <- Enum.zip(sends, results[caller]),
          got != expected,
          do: {caller, message, kind, length(list), expected, got}

    mailboxes = for pid <- receivers, do: {pid, mailbox(pid)}
    Enum.each(receivers ++ pids, &Process.exit(&1, :kill))

    %{
      mailboxes: mailboxes,
      expected: expected_mailboxes(plans, receivers ++ remote),
      wrong_summaries: wrong,
      kinds: plans |> Enum.flat_map(&elem(&1, 1)) |> Enum.frequencies_by(&elem(&1, 1))
    }
  end

  # Each fan-out: {message, kind, receiver list (for groups, every member),
  # expected summary}.
  defp plan(caller, fanouts, receivers, dead, remote) do
    sends =
      for n <- 1..fanouts do
        kind = Enum.random(@kinds)
        message = {caller, n}

        if kind in [:group, :group_offload] do
          members = receivers ++ dead

          {live, skipped} =
            if kind == :group, do: {length(receivers), 5}, else: {length(members), 0}

          {message, kind, members, %{local: live, remote: 0, skipped: skipped}}
        else
          picked = Enum.take_random(receivers, :rand.uniform(length(receivers)))
          twice = Enum.take(picked, 3)
          some_dead = Enum.take(dead, :rand.uniform(3))
          some_remote = Enum.take_random(remote, :rand.uniform(length(remote) + 1) - 1)
          nils = List.duplicate(nil, :rand.uniform(4) - 1)
          list = Enum.shuffle(picked ++ twice ++ some_dead ++ some_remote ++ nils)
          live = length(picked) + length(twice)

          expected =
            if kind in [:offload, :offload_packed],
              do: %{
                local: live + length(some_dead),
                remote: length(some_remote),
                skipped: length(nils)
              },
              else: %{
                local: live,
                remote: length(some_remote),
                skipped: length(some_dead) + length(nils)
              }

          {message, kind, list, expected}
        end
      end

    {caller, sends}
  end

  defp fan_out({message, kind, list, _expected}, group) do
    summary =
      case kind do
        :inline -> Fanout.send(list, message)
        :offload -> Fanout.send(list, message, offload: true)
        :inline_packed -> Fanout.send(list, message, pack: :binary)
        :offload_packed -> Fanout.send(list, message, offload: true, pack: :binary)
        :group -> Fanout.send(group, message)
        :group_offload -> Fanout.send(group, message, offload: true)
      end

    summary
  end

  @doc "What each receiver must hold, in order: its messages per caller."
  def expected_mailboxes(plans, receivers) do
    wanted = MapSet.new(receivers)

    plans
    |> Enum.flat_map(fn {_caller, sends} ->
      for {message, _kind, list, _} <- sends, pid <- list, pid in wanted, do: {pid, message}
    end)
    |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))
  end

  @doc "Whether `messages` is, for each caller, exactly `expected`'s order."
  def in_order?(messages, expected) do
    by_caller = fn list -> Enum.group_by(list, &elem(&1, 0)) end
    by_caller.(messages) == by_caller.(expected)
  end

  @doc "`n` processes that never take a message."
  def spawn_sleepers(n), do: for(_ <- 1..n, do: spawn(fn -> Process.sleep(:infinity) end))

  def kill(pids), do: Enum.each(pids, &Process.exit(&1, :kill))

  defp mailbox(pid) do
    {:messages, messages} = Process.info(pid, :messages)
    messages
  end

  defp dead_pid do
    {pid, ref} = spawn_monitor(fn -> :ok end)

    receive do
      {:DOWN, ^ref, _, _, _} -> pid
    end
  end
end
