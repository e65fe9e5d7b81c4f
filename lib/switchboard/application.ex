defmodule Switchboard.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    children = [Switchboard.Fanout.Supervisor, Switchboard.Erlpack.Port]
    Supervisor.start_link(children, strategy: :one_for_one, name: Switchboard.Supervisor)
  end
end
