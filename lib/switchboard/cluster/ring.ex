defmodule Switchboard.Cluster.Ring do
  @moduledoc """
  A consistent hash ring as a plain value, answering as discord/ex_hash_ring 7.x does.

  Each node is placed on the ring at `replicas` points; a key belongs to the
  node owning the first point after the key's hash, wrapping around at the
  top. For the same node names and replica counts, `find_node/2` returns,
  for every key, the node `ExHashRing.Ring.find_node/2` returns, so a
  deployment can move over without moving a guild:

    * a point is the md5 digest of the node's name followed by the replica
      number (`"\#{name}\#{replica}"`, replicas counted from 0), read as its
      last eight bytes in little-endian order (an unsigned 64-bit integer);
    * a key is hashed the same way from `to_string(key)`;
    * the owner is the node of the smallest point strictly greater than the
      key's hash, or of the smallest point of all when there is none.

  Lookups read an immutable value and run in the caller, so a ring kept in
  `:persistent_term` (as `Switchboard.Cluster` does) is found without a
  process call or a copy: one md5 and a binary search over a tuple.

  ## Examples

      iex> alias Switchboard.Cluster.Ring
      iex> ring = Ring.new(["a", {"b", 2}], replicas: 4)
      iex> Ring.nodes(ring)
      [{"a", 4}, {"b", 2}]
      iex> Ring.find_node(ring, "guild:1") in ["a", "b"]
      true
      iex> Ring.find_node(Ring.new([]), "guild:1")
      nil
  """

  defstruct nodes: [], points: {}, owners: {}

  @default_replicas 512

  @typedoc "A node's name: anything with a `String.Chars` implementation (binaries, atoms)."
  @type name :: String.Chars.t()

  @typedoc "A node as given to `new/2`: a bare name (default replicas) or `{name, replicas}`."
  @type definition :: name() | {name(), non_neg_integer()}

  @typedoc "The ring: its nodes (in the order `nodes/1` lists them) and sorted points."
  @type t :: %__MODULE__{
          nodes: [{name(), non_neg_integer()}],
          points: tuple(),
          owners: tuple()
        }

  @doc """
  Builds a ring of `nodes`.

  ## Options

    * `:replicas` - points per node given as a bare name. Defaults to #{@default_replicas}.

  ## Examples

      iex> ring = Switchboard.Cluster.Ring.new([:"a@host", {:"b@host", 8}], replicas: 16)
      iex> Switchboard.Cluster.Ring.nodes(ring)
      [{:"a@host", 16}, {:"b@host", 8}]

      iex> Switchboard.Cluster.Ring.new([{"a", -1}])
      ** (ArgumentError) node "a" has -1 replicas, replicas must be a non-negative integer
  """
  @spec new([definition()], keyword()) :: t()
  def new(nodes, opts \\ []) when is_list(nodes) do
    opts = Keyword.validate!(opts, replicas: @default_replicas)
    default = opts[:replicas]

    Enum.reduce(nodes, %__MODULE__{}, fn
      {name, replicas}, ring -> put_node(ring, name, replicas)
      name, ring -> put_node(ring, name, default)
    end)
    |> build()
  end

  @doc """
  Adds a node with `replicas` points (default #{@default_replicas}).

  Raises `ArgumentError` when a node of that name is already on the ring.

  ## Examples

      iex> alias Switchboard.Cluster.Ring
      iex> ring = Ring.new(["a"], replicas: 2) |> Ring.add_node("b", 3)
      iex> Ring.nodes(ring)
      [{"a", 2}, {"b", 3}]
      iex> Ring.add_node(ring, "a")
      ** (ArgumentError) node "a" is already on the ring
  """
  @spec add_node(t(), name(), non_neg_integer()) :: t()
  def add_node(%__MODULE__{} = ring, name, replicas \\ @default_replicas) do
    ring |> put_node(name, replicas) |> build()
  end

  @doc """
  Removes the node called `name` (the ring is returned unchanged when there is none).

  ## Examples

      iex> alias Switchboard.Cluster.Ring
      iex> ring = Ring.new(["a", "b"], replicas: 2) |> Ring.remove_node("a")
      iex> Ring.nodes(ring)
      [{"b", 2}]
      iex> Ring.find_node(ring, 42)
      "b"
  """
  @spec remove_node(t(), name()) :: t()
  def remove_node(%__MODULE__{nodes: nodes} = ring, name) do
    case List.keytake(nodes, name, 0) do
      nil -> ring
      {_removed, rest} -> build(%{ring | nodes: rest})
    end
  end

  @doc "The ring's nodes as `{name, replicas}`, in the order they were added."
  @spec nodes(t()) :: [{name(), non_neg_integer()}]
  def nodes(%__MODULE__{nodes: nodes}), do: nodes

  @doc """
  The node that owns `key` (any `String.Chars` term), or `nil` when the ring has no points.

  ## Examples

      iex> ring = Switchboard.Cluster.Ring.new(["only"], replicas: 1)
      iex> Switchboard.Cluster.Ring.find_node(ring, 123)
      "only"
  """
  @spec find_node(t(), String.Chars.t()) :: name() | nil
  def find_node(%__MODULE__{points: {}}, _key), do: nil

  def find_node(%__MODULE__{points: points, owners: owners}, key) do
    index = first_above(points, hash(key), 0, tuple_size(points))
    index = if index == tuple_size(points), do: 0, else: index
    elem(owners, index)
  end

  @doc """
  The ring position of `key`: md5 of `to_string(key)`, its last eight bytes as
  a little-endian unsigned integer.

  ## Examples

      iex> Switchboard.Cluster.Ring.hash("a0")
      Switchboard.Cluster.Ring.hash(:a0)
  """
  @spec hash(String.Chars.t()) :: non_neg_integer()
  def hash(key) when is_binary(key) do
    <<_::binary-size(8), point::unsigned-little-integer-size(64)>> = :erlang.md5(key)
    point
  end

  def hash(key), do: hash(to_string(key))

  # ---------------------------------------------------------------------------

  defp put_node(%__MODULE__{nodes: nodes} = ring, name, replicas) do
    unless is_integer(replicas) and replicas >= 0 do
      raise ArgumentError,
            "node #{inspect(name)} has #{inspect(replicas)} replicas, " <>
              "replicas must be a non-negative integer"
    end

    if List.keymember?(nodes, name, 0) do
      raise ArgumentError, "node #{inspect(name)} is already on the ring"
    end

    %{ring | nodes: nodes ++ [{name, replicas}]}
  end

  # Every point, sorted by position. Two points at one position (a 64-bit
  # md5 collision) keep the first node listed.
  defp build(%__MODULE__{nodes: nodes} = ring) do
    points =
      for {name, replicas} <- nodes, replica <- 0..(replicas - 1)//1 do
        {hash("#{name}#{replica}"), name}
      end
      |> Enum.sort_by(&elem(&1, 0))
      |> Enum.dedup_by(&elem(&1, 0))

    %{
      ring
      | points: points |> Enum.map(&elem(&1, 0)) |> List.to_tuple(),
        owners: points |> Enum.map(&elem(&1, 1)) |> List.to_tuple()
    }
  end

  # The index of the first point strictly above `hash` in [low, high).
  defp first_above(_points, _hash, low, high) when low >= high, do: low

  defp first_above(points, hash, low, high) do
    middle = div(low + high, 2)

    if elem(points, middle) > hash,
      do: first_above(points, hash, low, middle),
      else: first_above(points, hash, middle + 1, high)
  end
end
