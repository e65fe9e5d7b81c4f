defmodule Switchboard.ClusterTest do
  # Real BEAM nodes on this machine (OTP's :peer over loopback).
  use ExUnit.Case, async: false

  @moduletag :distributed
  @moduletag timeout: 120_000

  import Switchboard.Test.RuntimeClient

  alias Switchboard.{Cluster, Guild, Peer, Session}
  alias Switchboard.Cluster.Ring

  setup_all do
    ensure_distributed!()
    peers = for _ <- 1..2, do: start_peer()
    on_exit(fn -> Enum.each(peers, fn {peer, _} -> stop_peer(peer) end) end)
    nodes = [node() | Enum.map(peers, &elem(&1, 1))]
    wait_for_ring(nodes)
    %{nodes: nodes}
  end

  test "guilds start on the node the ring names, and every node finds them there", %{nodes: nodes} do
    ring = Ring.new(Enum.sort(nodes))

    owners =
      for id <- 1..24 do
        id = "placement-#{id}"
        {:ok, pid} = Cluster.start_guild(id, members: [member(1)])
        assert node(pid) == Ring.find_node(ring, id)
        assert {:ok, ^pid} = Cluster.start_guild(id)

        for node <- nodes do
          assert :erpc.call(node, Cluster, :lookup_guild, [id]) == pid
          assert :erpc.call(node, Cluster, :owner, [id]) == node(pid)
        end

        node(pid)
      end

    # 24 guilds over three nodes: each node owns some.
    assert Enum.sort(Enum.uniq(owners)) == Enum.sort(nodes)
  end

  test "a stopped node's guilds restart on their new owner with their members; sessions re-attach",
       %{nodes: nodes} do
    {peer, doomed} = start_peer()
    wait_for_ring([doomed | nodes])

    ids =
      Enum.filter(Enum.map(1..200, &"failover-#{&1}"), &(Cluster.owner(&1) == doomed))
      |> Enum.take(4)

    assert length(ids) == 4

    expected =
      for id <- ids, into: %{} do
        {:ok, pid} = Cluster.start_guild(id, members: for(n <- 1..5, do: member(n)))
        assert node(pid) == doomed
        # Changes after the start reach the backup too.
        :ok = Guild.join(pid, member(6, name: "late"))
        :ok = Guild.leave(pid, 2)
        :ok = Guild.update_presence(pid, 3, :offline)
        {id, [1, 3, 4, 5, 6]}
      end

    [first | _] = ids
    session = start_session()
    :ok = Session.attach(session, first, ranges: [[0, 99]])
    # Let the replication messages land before the node goes.
    for id <- ids, do: :erpc.call(doomed, Guild, :stats, [Cluster.lookup_guild(id)])
    Process.sleep(100)

    stop_peer(peer)
    wait_for_ring(nodes)

    for id <- ids do
      pid = wait_for(fn -> Cluster.lookup_guild(id) end)
      assert node(pid) in nodes
      assert node(pid) == Ring.find_node(Ring.new(Enum.sort(nodes)), id)
      members = :erpc.call(node(pid), Guild, :members, [pid])
      assert Enum.sort(Enum.map(members, & &1.id)) == expected[id]
      assert Enum.find(members, &(&1.id == 3)).status == :offline
    end

    # The session found the guild again, and hears what it publishes.
    wait_for(fn -> Session.stats(session).guilds == [first] || nil end)
    {:ok, _} = Guild.publish(Cluster.lookup_guild(first), {"AFTER_MOVE", %{}})
    frames = collect_until([session], &(&1["t"] == "AFTER_MOVE"))[session]
    assert List.last(frames)["t"] == "AFTER_MOVE"
  end

  test "a guild stopped on purpose stays stopped when its node later leaves (its replica goes too)",
       %{nodes: nodes} do
    {peer, doomed} = start_peer()
    wait_for_ring([doomed | nodes])

    [stopped, kept] =
      Enum.filter(Enum.map(1..200, &"stopped-#{&1}"), &(Cluster.owner(&1) == doomed))
      |> Enum.take(2)

    for id <- [stopped, kept] do
      {:ok, pid} = Cluster.start_guild(id, members: [member(1)])
      :ok = Guild.join(pid, member(2))
      # Every replication message has left the guild before the call returns.
      :erpc.call(doomed, Guild, :stats, [pid])
    end

    :ok = :erpc.call(doomed, Guild, :stop, [Cluster.lookup_guild(stopped)])
    Process.sleep(100)
    stop_peer(peer)
    wait_for_ring(nodes)

    # The kept one comes back from its replica; the stopped one does not.
    pid = wait_for(fn -> Cluster.lookup_guild(kept) end)
    assert Enum.sort(Enum.map(:erpc.call(node(pid), Guild, :members, [pid]), & &1.id)) == [1, 2]
    Process.sleep(200)
    assert Cluster.lookup_guild(stopped) == nil
  end

  test "a node that joins takes over the guilds the ring now gives it, members included", %{
    nodes: nodes
  } do
    ids = for n <- 1..40, do: "handover-#{n}"

    for id <- ids do
      {:ok, pid} = Cluster.start_guild(id, members: [member(1), member(2, status: :idle)])
      :ok = Guild.join(pid, member(3))
    end

    {peer, newcomer} = start_peer()
    on_exit(fn -> stop_peer(peer) end)
    wait_for_ring([newcomer | nodes])
    moved = Enum.filter(ids, &(Cluster.owner(&1) == newcomer))
    assert moved != []

    for id <- moved do
      pid = wait_for(fn -> :erpc.call(newcomer, Guild, :whereis, [id]) end)
      members = :erpc.call(newcomer, Guild, :members, [pid])
      assert Enum.sort(Enum.map(members, & &1.id)) == [1, 2, 3]
    end

    # None left behind on their old nodes.
    for id <- moved, node <- nodes do
      wait_for(fn -> :erpc.call(node, Guild, :whereis, [id]) == nil || nil end)
    end
  end

  # ---------------------------------------------------------------------------

  defp wait_for(fun, tries \\ 200) do
    case fun.() do
      nil when tries > 0 ->
        Process.sleep(25)
        wait_for(fun, tries - 1)

      nil ->
        flunk("timed out")

      value ->
        value
    end
  end

  defp wait_for_ring(nodes) do
    for node <- nodes do
      wait_for(fn -> :erpc.call(node, Cluster, :nodes, []) == Enum.sort(nodes) || nil end)
    end
  end

  defp ensure_distributed! do
    Peer.ensure_distributed!("switchboard_test")
    Cluster.refresh()
  end

  defp start_peer, do: Peer.start("cluster_peer")

  defp stop_peer(peer), do: Peer.stop(peer)
end
