defmodule Switchboard.Fanout.Supervisor do
  @moduledoc false
  # Fan-out processes on every node: the partitioner that receives other
  # nodes' fan-outs, the sender pool that routes this node's remote parts,
  # and the same pair for the pure-Elixir twin.
  use Supervisor

  alias Switchboard.Fanout.{Partitioner, Pure, Routing, Sender}

  def start_link(opts), do: Supervisor.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    senders = Routing.sender_count()

    children =
      [Partitioner, Pure.Partitioner] ++
        for(index <- 0..(senders - 1), do: Sender.child_spec(index)) ++
        for(index <- 0..(senders - 1), do: Pure.Sender.child_spec(index))

    Supervisor.init(children, strategy: :one_for_one)
  end
end
