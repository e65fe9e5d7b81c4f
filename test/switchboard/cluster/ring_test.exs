defmodule Switchboard.Cluster.RingTest do
  use ExUnit.Case, async: true

  alias Switchboard.Cluster.Ring

  doctest Ring

  # Answers of discord/ex_hash_ring 7.0.0's `find_node/2` for these nodes and
  # keys, derived by the ETS model below (its walk: an ordered_set keyed
  # {generation, hash}, `:ets.next/2` from the key's hash, wrapping to the
  # generation's first point).
  @vectors [
    {[{"node-a", 512}, {"node-b", 512}, {"node-c", 512}],
     [
       {"guild:1", "node-a"},
       {"guild:2", "node-b"},
       {"1", "node-c"},
       {"42", "node-c"},
       {"281474976710656", "node-a"},
       {"80351110224678912", "node-a"},
       {"hello", "node-a"},
       {"", "node-c"},
       {"zzz", "node-a"},
       {"switchboard", "node-a"}
     ]},
    {[{"a@127.0.0.1", 512}, {"b@127.0.0.1", 128}],
     [
       {"1", "a@127.0.0.1"},
       {"5", "a@127.0.0.1"},
       {"7", "a@127.0.0.1"},
       {"8", "b@127.0.0.1"},
       {"9", "a@127.0.0.1"}
     ]},
    {[{"x", 1}, {"y", 2}, {"z", 3}],
     [
       {"1", "z"},
       {"2", "x"},
       {"5", "y"},
       {"6", "y"},
       {"8", "z"},
       {"11", "z"},
       {"12", "x"}
     ]}
  ]

  test "matches ex_hash_ring 7.x's answers for known rings and keys" do
    for {nodes, expectations} <- @vectors, {key, owner} <- expectations do
      assert Ring.find_node(Ring.new(nodes), key) == owner, "#{inspect(nodes)} #{inspect(key)}"
    end
  end

  test "points are md5's last eight bytes, little-endian, of name and replica" do
    assert Ring.hash("x0") == 6_593_820_403_174_717_626
    assert Ring.hash("y1") == 16_472_500_754_337_585_686
    assert Ring.hash(:z2) == 15_002_762_888_688_321_478
  end

  test "a key on a point belongs to the next point; past the last point it wraps" do
    ring = Ring.new([{"x", 1}, {"y", 2}, {"z", 3}])
    # "x0" hashes onto x's only point: the next point up is z1.
    assert Ring.find_node(ring, "x0") == "z"
    # "y1" hashes onto the highest point: wraps to the lowest, x0.
    assert Ring.find_node(ring, "y1") == "x"
  end

  test "integers, atoms and binaries with the same text are the same key" do
    ring = Ring.new(["a", "b", "c"], replicas: 64)

    for n <- 1..200 do
      assert Ring.find_node(ring, n) == Ring.find_node(ring, Integer.to_string(n))
    end

    assert Ring.find_node(ring, :abc) == Ring.find_node(ring, "abc")
  end

  test "agrees with an ETS walk over random rings, keys and membership changes" do
    :rand.seed(:exsss, {1, 2, 3})

    for _round <- 1..20 do
      nodes =
        for i <- 1..Enum.random(1..6), do: {"n#{i}-#{:rand.uniform(1000)}", Enum.random(0..40)}

      nodes = Enum.uniq_by(nodes, &elem(&1, 0))
      ring = Ring.new(nodes)
      extra = {"late-#{:rand.uniform(1000)}", Enum.random(1..40)}
      grown = Ring.add_node(ring, elem(extra, 0), elem(extra, 1))
      {dropped, _} = hd(nodes)
      shrunk = Ring.remove_node(grown, dropped)

      for {ring, nodes} <- [
            {ring, nodes},
            {grown, nodes ++ [extra]},
            {shrunk, List.keydelete(nodes ++ [extra], dropped, 0)}
          ] do
        model = ets_model(nodes)

        for _ <- 1..50 do
          key =
            Enum.random([
              :rand.uniform(4_611_686_018_427_387_904),
              "guild:#{:rand.uniform(100_000)}"
            ])

          assert Ring.find_node(ring, key) == ets_find(model, key)
        end

        :ets.delete(model)
      end
    end
  end

  test "an empty ring, or one whose nodes have no points, owns nothing" do
    assert Ring.find_node(Ring.new([]), "k") == nil
    assert Ring.find_node(Ring.new([{"a", 0}]), "k") == nil
    assert Ring.nodes(Ring.new([{"a", 0}])) == [{"a", 0}]
  end

  test "removing an absent node is a no-op; names keep their type" do
    ring = Ring.new([:a@h, :b@h], replicas: 8)
    assert Ring.remove_node(ring, :c@h) == ring
    assert Ring.find_node(ring, 1) in [:a@h, :b@h]
  end

  test "bad replica counts and duplicate names raise" do
    assert_raise ArgumentError, ~r/replicas must be a non-negative integer/, fn ->
      Ring.new(["a"], replicas: :many)
    end

    assert_raise ArgumentError, ~s(node "a" is already on the ring), fn ->
      Ring.new(["a", {"a", 3}])
    end
  end

  test "moving to a bigger ring moves only the keys the new node takes" do
    before = Ring.new(["a", "b", "c"])
    later = Ring.add_node(before, "d")

    for key <- 1..2_000 do
      owner = Ring.find_node(later, key)
      assert owner == "d" or owner == Ring.find_node(before, key)
    end
  end

  # -- the oracle: ex_hash_ring's lookup, as ETS does it ----------------------

  defp ets_model(nodes) do
    table = :ets.new(:model, [:ordered_set])

    for {name, replicas} <- nodes, replicas > 0, replica <- 0..(replicas - 1) do
      <<_::64, point::little-unsigned-64>> = :erlang.md5("#{name}#{replica}")
      :ets.insert(table, {{1, point}, name})
    end

    table
  end

  defp ets_find(table, key) do
    <<_::64, hash::little-unsigned-64>> = :erlang.md5(to_string(key))

    next =
      case :ets.next(table, {1, hash}) do
        {1, _} = found -> found
        _ -> :ets.next(table, {1, -1})
      end

    case next do
      :"$end_of_table" -> nil
      found -> :ets.lookup_element(table, found, 2)
    end
  end
end
