defmodule Switchboard.Gateway.Listener do
  @moduledoc false
  # Owns the listening socket and a pool of acceptors. Each acceptor loops on
  # :gen_tcp.accept and hands every socket to a new Connection process
  # started under the gateway's connection supervisor (whose max_children is
  # the connection limit: past it the socket is closed at once).

  use GenServer

  alias Switchboard.Gateway.Connection

  def start_link(config),
    do: GenServer.start_link(__MODULE__, config, name: Module.concat(config.name, Listener))

  def child_spec(config),
    do: %{id: __MODULE__, start: {__MODULE__, :start_link, [config]}, type: :worker}

  def port(listener), do: GenServer.call(listener, :port)

  @impl true
  def init(config) do
    Process.flag(:trap_exit, true)

    {:ok, listen} =
      :gen_tcp.listen(config.port, [
        :binary,
        ip: config.ip,
        active: false,
        reuseaddr: true,
        backlog: 4096,
        nodelay: true
      ])

    {:ok, port} = :inet.port(listen)
    :persistent_term.put({Switchboard.Gateway, config.name, :port}, port)
    acceptors = for _ <- 1..config.acceptors, do: spawn_link(fn -> accept(listen, config) end)
    {:ok, %{listen: listen, port: port, acceptors: acceptors}}
  end

  @impl true
  def handle_call(:port, _from, state), do: {:reply, state.port, state}

  @impl true
  def handle_info({:EXIT, _pid, reason}, state), do: {:stop, reason, state}

  @impl true
  def terminate(_reason, state), do: :gen_tcp.close(state.listen)

  defp accept(listen, config) do
    case :gen_tcp.accept(listen) do
      {:ok, socket} ->
        hand_over(socket, config)
        accept(listen, config)

      {:error, :closed} ->
        exit(:normal)

      {:error, reason} when reason in [:emfile, :enfile] ->
        # Out of descriptors: back off instead of spinning.
        Process.sleep(100)
        accept(listen, config)

      {:error, _transient} ->
        accept(listen, config)
    end
  end

  defp hand_over(socket, config) do
    case DynamicSupervisor.start_child(config.connections, {Connection, config}) do
      {:ok, pid} ->
        case :gen_tcp.controlling_process(socket, pid) do
          :ok -> send(pid, {:socket, socket})
          {:error, _} -> :gen_tcp.close(socket)
        end

      {:error, _max_children} ->
        :gen_tcp.close(socket)
    end
  end
end
