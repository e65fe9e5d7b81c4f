defmodule Switchboard.Erlpack.Port.Worker do
  @moduledoc false
  # One switchboard_etf_port OS process and the queue of requests for it.
  # Requests go to the port one at a time; callers wait in GenServer.call
  # while the worker stays free to notice the port's death or a timeout.
  use GenServer

  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: opts[:name])

  # Returns {:ok, reply_frame}, or {:error, :port_exited} when the port died
  # or was killed for taking too long.
  def request(worker, frame) do
    GenServer.call(worker, {:request, frame}, :infinity)
  catch
    # The worker itself went down with the request.
    :exit, _reason -> {:error, :port_exited}
  end

  def info(worker), do: GenServer.call(worker, :info)

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)

    {:ok,
     %{
       path: Keyword.fetch!(opts, :path),
       timeout: Keyword.fetch!(opts, :request_timeout),
       port: nil,
       os_pid: nil,
       current: nil,
       queue: :queue.new()
     }}
  end

  @impl true
  def handle_call({:request, frame}, from, state) do
    {:noreply, next(%{state | queue: :queue.in({from, frame}, state.queue)})}
  end

  def handle_call(:info, _from, state) do
    {:reply, %{worker: self(), os_pid: state.os_pid, busy: state.current != nil}, state}
  end

  @impl true
  def handle_info({port, {:data, reply}}, %{port: port, current: {from, _ref, timer}} = state) do
    Process.cancel_timer(timer)
    GenServer.reply(from, {:ok, reply})
    {:noreply, next(%{state | current: nil})}
  end

  def handle_info({port, {:exit_status, _status}}, %{port: port} = state) do
    {:noreply, state |> fail(:port_exited) |> replace_port() |> next()}
  end

  def handle_info({:EXIT, port, _reason}, %{port: port} = state) do
    {:noreply, state |> fail(:port_exited) |> replace_port() |> next()}
  end

  def handle_info({:request_timeout, ref}, %{current: {_from, ref, _timer}} = state) do
    kill(state.os_pid)
    {:noreply, state |> fail(:port_exited) |> replace_port() |> next()}
  end

  # Messages from ports already replaced, timers already cancelled.
  def handle_info(_stale, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, %{port: nil}), do: :ok

  def terminate(_reason, %{port: port}) do
    # The port program exits when its stdin closes.
    Port.close(port)
  catch
    :error, :badarg -> :ok
  end

  # Sends the next queued request when the port is idle.
  defp next(%{current: nil} = state) do
    case :queue.out(state.queue) do
      {:empty, _queue} ->
        state

      {{:value, {from, frame}}, queue} ->
        state = ensure_port(%{state | queue: queue})

        if state.port do
          true = Port.command(state.port, frame)
          # The ref in the message ties a timeout to its request: a late one
          # never hits the next request.
          ref = make_ref()
          timer = Process.send_after(self(), {:request_timeout, ref}, state.timeout)
          %{state | current: {from, ref, timer}}
        else
          GenServer.reply(from, {:error, :port_exited})
          next(state)
        end
    end
  end

  defp next(state), do: state

  defp fail(%{current: nil} = state, _reason), do: state

  defp fail(%{current: {from, _ref, timer}} = state, reason) do
    Process.cancel_timer(timer)
    GenServer.reply(from, {:error, reason})
    %{state | current: nil}
  end

  # The dead port is forgotten and a new one started now, so the pool is
  # whole again before the next request arrives.
  defp replace_port(state), do: ensure_port(%{state | port: nil, os_pid: nil})

  defp ensure_port(%{port: nil} = state) do
    port =
      Port.open({:spawn_executable, state.path}, [:binary, {:packet, 4}, :exit_status, :use_stdio])

    {:os_pid, os_pid} = Port.info(port, :os_pid)
    %{state | port: port, os_pid: os_pid}
  rescue
    # The executable is missing or cannot start: requests fail until it can.
    ErlangError -> %{state | port: nil, os_pid: nil}
  end

  defp ensure_port(state), do: state

  defp kill(nil), do: :ok

  defp kill(os_pid) do
    System.cmd("kill", ["-9", Integer.to_string(os_pid)], stderr_to_stdout: true)
    :ok
  end
end
