defmodule Switchboard.Erlpack.Port.Worker do
  @moduledoc false
  # One switchboard_etf_port OS process and the queue of requests for it.
  # Requests go to the port one at a time; callers wait in GenServer.call
  # while the worker stays free to notice the port's death or a timeout.
  use GenServer

  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: opts[:name])

  # Returns {:ok, reply_frame}, {:error, :port_exited} when the port died or
  # was killed for taking longer than the pool's request timeout, or
  # {:error, :timeout} when `timeout` (milliseconds, or nil for none beyond
  # the pool's) passed first, queueing included.
  def request(worker, frame, timeout \\ nil)

  def request(worker, frame, nil), do: call(worker, {:request, frame, nil}, :infinity)

  def request(worker, frame, timeout) when is_integer(timeout) do
    # The worker answers :timeout itself; the margin only covers a worker
    # too busy to.
    call(worker, {:request, frame, timeout}, timeout + 5_000)
  end

  defp call(worker, message, timeout) do
    GenServer.call(worker, message, timeout)
  catch
    :exit, {:timeout, _} -> {:error, :timeout}
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
       # {from, ref, timer, started_at} of the request at the port
       current: nil,
       # {from, frame, ref, timeout}
       queue: :queue.new()
     }}
  end

  @impl true
  def handle_call({:request, frame, timeout}, from, state) do
    ref = make_ref()
    if timeout, do: Process.send_after(self(), {:caller_timeout, ref}, timeout)
    {:noreply, next(%{state | queue: :queue.in({from, frame, ref, timeout}, state.queue)})}
  end

  def handle_call(:info, _from, state) do
    {:reply, %{worker: self(), os_pid: state.os_pid, busy: state.current != nil}, state}
  end

  @impl true
  def handle_info(
        {port, {:data, reply}},
        %{port: port, current: {from, _ref, timer, _at}} = state
      ) do
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

  def handle_info({:request_timeout, ref}, %{current: {_from, ref, _timer, _at}} = state) do
    {:noreply, state |> kill_port() |> fail(:port_exited) |> replace_port() |> next()}
  end

  # The caller of the request at the port gave up: the port is killed and
  # replaced, so that nobody else waits for it.
  def handle_info({:caller_timeout, ref}, %{current: {_from, ref, _timer, _at}} = state) do
    {:noreply, state |> kill_port() |> fail(:timeout) |> replace_port() |> next()}
  end

  # A queued caller gave up: its request is dropped; and if the request at
  # the port has run longer than that caller was willing to wait in all,
  # the port is stuck, and is replaced.
  def handle_info({:caller_timeout, ref}, state) do
    case Enum.split_with(:queue.to_list(state.queue), &(elem(&1, 2) == ref)) do
      {[{from, _frame, _ref, timeout}], rest} ->
        GenServer.reply(from, {:error, :timeout})
        state = %{state | queue: :queue.from_list(rest)}
        {:noreply, if(stuck?(state, timeout), do: replace_stuck(state), else: state)}

      {[], _queue} ->
        {:noreply, state}
    end
  end

  # Messages from ports already replaced, timers already cancelled.
  def handle_info(_stale, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    # The port program also exits when its stdin closes; killing it here
    # ends a request in progress at once.
    _ = kill_port(state)
    :ok
  end

  defp stuck?(%{current: {_from, _ref, _timer, started_at}}, timeout),
    do: System.monotonic_time(:millisecond) - started_at >= timeout

  defp stuck?(_state, _timeout), do: false

  defp replace_stuck(state),
    do: state |> kill_port() |> fail(:port_exited) |> replace_port() |> next()

  # Sends the next queued request when the port is idle.
  defp next(%{current: nil} = state) do
    case :queue.out(state.queue) do
      {:empty, _queue} ->
        state

      {{:value, {from, frame, ref, _timeout}}, queue} ->
        state = ensure_port(%{state | queue: queue})

        if state.port do
          true = Port.command(state.port, frame)
          # The ref in the message ties a timeout to its request: a late one
          # never hits the next request.
          timer = Process.send_after(self(), {:request_timeout, ref}, state.timeout)
          %{state | current: {from, ref, timer, System.monotonic_time(:millisecond)}}
        else
          GenServer.reply(from, {:error, :port_exited})
          next(state)
        end
    end
  end

  defp next(state), do: state

  defp fail(%{current: nil} = state, _reason), do: state

  defp fail(%{current: {from, _ref, timer, _at}} = state, reason) do
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

  defp kill_port(%{port: nil} = state), do: state

  defp kill_port(%{port: port, os_pid: os_pid} = state) do
    try do
      Port.close(port)
    catch
      :error, :badarg -> :ok
    end

    System.cmd("kill", ["-9", Integer.to_string(os_pid)], stderr_to_stdout: true)
    state
  end
end
