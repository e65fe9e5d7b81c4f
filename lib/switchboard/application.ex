defmodule Switchboard.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
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
        Switchboard.Metrics.Pure
      ] ++ Application.get_env(:switchboard, :metrics_reporters, [])

    Supervisor.start_link(children, strategy: :one_for_one, name: Switchboard.Supervisor)
  end
end
