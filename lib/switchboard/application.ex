defmodule Switchboard.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    Switchboard.Session.init_counters()

    children = [
      Switchboard.Fanout.Supervisor,
      Switchboard.Erlpack.Port,
      {Registry, keys: :unique, name: Switchboard.Guild.Registry},
      {DynamicSupervisor, name: Switchboard.Guild.Supervisor, strategy: :one_for_one},
      {DynamicSupervisor, name: Switchboard.Session.Supervisor, strategy: :one_for_one},
      Switchboard.Cluster.Store,
      Switchboard.Cluster
    ]

    Supervisor.start_link(children, strategy: :one_for_one, name: Switchboard.Supervisor)
  end
end
