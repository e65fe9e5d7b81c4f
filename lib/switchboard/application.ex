defmodule Switchboard.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    children = [Switchboard.Fanout.Supervisor, Switchboard.Erlpack.Port] ++ gateway()
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
