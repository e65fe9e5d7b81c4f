defmodule Switchboard.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    Switchboard.Session.init_counters()
    Switchboard.Implementation.install(Switchboard.Implementation.mode())

    # Metrics reporters are child specs, e.g. in config/runtime.exs:
    #   config :switchboard, metrics_reporters: [
    #     {Switchboard.Metrics.StatsD, host: "127.0.0.1", port: 8125},
    #     {Switchboard.Metrics.Prometheus, port: 9568}
    #   ]
    children =
      [
        Switchboard.Fanout.Supervisor,
        Switchboard.Erlpack.Port,
        Switchboard.Semaphore.Pure,
        Switchboard.Metrics.Pure,
        Switchboard.RuntimeMetrics,
        {Registry, keys: :unique, name: Switchboard.Guild.Registry},
        {DynamicSupervisor, name: Switchboard.Guild.Supervisor, strategy: :one_for_one},
        {DynamicSupervisor, name: Switchboard.Session.Supervisor, strategy: :one_for_one},
        Switchboard.Cluster.Store,
        Switchboard.Cluster
      ] ++ Application.get_env(:switchboard, :metrics_reporters, []) ++ gateway()

    Supervisor.start_link(children, strategy: :one_for_one, name: Switchboard.Supervisor)
  end

  # `config :switchboard, :gateway, port: 4000, ...` starts a gateway here
  # (see Switchboard.Gateway for the options).
  defp gateway do
    case Application.get_env(:switchboard, :gateway) do
      nil -> []
      opts -> [{Switchboard.Gateway, opts}]
    end
  end
end
