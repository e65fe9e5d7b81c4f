defmodule Switchboard.Test.NodeClient do
  @moduledoc false
  # Drives test/js/driver.js (npm's ws, Node's zlib, fzstd): real WebSocket
  # clients in another OS process. Events are queued per client id; next/3
  # waits for the next one.
  use GenServer

  @driver Path.expand("../js/driver.js", __DIR__)

  def start_link(_ \\ []), do: GenServer.start_link(__MODULE__, nil)

  def connect(driver, id, url, opts \\ []),
    do:
      command(driver, %{
        cmd: "connect",
        id: id,
        url: url,
        heartbeat: Keyword.get(opts, :heartbeat, false)
      })

  def send_payload(driver, id, payload),
    do: command(driver, %{cmd: "send", id: id, payload: payload})

  def send_text(driver, id, text), do: command(driver, %{cmd: "send", id: id, text: text})
  def drop(driver, id), do: command(driver, %{cmd: "terminate", id: id})

  def command(driver, message), do: GenServer.call(driver, {:command, message})

  # The next event of client `id` (a map with "event" and more). Timeouts are
  # generous: CI machines are small and shared.
  def next(driver, id, timeout \\ 20_000), do: GenServer.call(driver, {:next, id}, timeout)

  # Skips events until one matches `fun`; returns it.
  def until(driver, id, fun, timeout \\ 20_000) do
    event = next(driver, id, timeout)
    if fun.(event), do: event, else: until(driver, id, fun, timeout)
  end

  def payload(driver, id, timeout \\ 20_000) do
    case next(driver, id, timeout) do
      %{"event" => "payload", "payload" => payload} -> payload
      other -> raise "expected a payload for #{id}, got #{inspect(other)}"
    end
  end

  @impl true
  def init(nil) do
    node = System.find_executable("node") || raise "node not found"
    port = Port.open({:spawn_executable, node}, [:binary, {:line, 1_000_000}, args: [@driver]])
    {:ok, %{port: port, events: %{}, waiting: %{}, partial: ""}}
  end

  @impl true
  def handle_call({:command, message}, _from, state) do
    Port.command(state.port, [Switchboard.Json.encode_to_iodata!(message), "\n"])
    {:reply, :ok, state}
  end

  def handle_call({:next, id}, from, state) do
    case Map.get(state.events, id, :queue.new()) |> :queue.out() do
      {{:value, event}, rest} -> {:reply, event, put_in(state.events[id], rest)}
      {:empty, _} -> {:noreply, put_in(state.waiting[id], from)}
    end
  end

  @impl true
  def handle_info({port, {:data, {:noeol, chunk}}}, %{port: port} = state),
    do: {:noreply, %{state | partial: state.partial <> chunk}}

  def handle_info({port, {:data, {:eol, line}}}, %{port: port} = state) do
    event = Switchboard.Json.decode!(state.partial <> line)
    state = %{state | partial: ""}
    id = event["id"]

    case Map.pop(state.waiting, id) do
      {nil, _} ->
        queue = Map.get(state.events, id, :queue.new())
        {:noreply, put_in(state.events[id], :queue.in(event, queue))}

      {from, waiting} ->
        GenServer.reply(from, event)
        {:noreply, %{state | waiting: waiting}}
    end
  end

  @impl true
  def terminate(_reason, state) do
    Port.close(state.port)
  catch
    _, _ -> :ok
  end
end

defmodule Switchboard.Test.RawClient do
  @moduledoc false
  # A WebSocket client over :gen_tcp written in the test, for what a
  # library client will not send: unmasked frames, bad UTF-8, ETF payloads.
  alias Switchboard.Gateway.WebSocket

  def open(port, path) do
    {:ok, socket} = :gen_tcp.connect(~c"127.0.0.1", port, [:binary, active: false])
    :ok = :gen_tcp.send(socket, request(path))
    {:ok, response} = read_head(socket, "")
    {socket, response}
  end

  def connect(port, path) do
    {socket, {head, rest}} = open(port, path)
    "HTTP/1.1 101 " <> _ = head
    {socket, rest}
  end

  def request(path) do
    "GET #{path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" <>
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
  end

  defp read_head(socket, acc) do
    case :binary.split(acc, "\r\n\r\n") do
      [head, rest] ->
        {:ok, {head, rest}}

      [_] ->
        case :gen_tcp.recv(socket, 0, 5_000) do
          {:ok, data} -> read_head(socket, acc <> data)
          error -> error
        end
    end
  end

  def frame(opcode, payload, opts \\ []) do
    fin = if Keyword.get(opts, :fin, true), do: 1, else: 0
    size = byte_size(payload)

    len =
      cond do
        size < 126 -> <<size::7>>
        size < 65_536 -> <<126::7, size::16>>
        true -> <<127::7, size::64>>
      end

    if Keyword.get(opts, :masked, true) do
      key = :crypto.strong_rand_bytes(4)

      <<fin::1, 0::3, opcode::4, 1::1, len::bitstring, key::binary,
        WebSocket.mask(payload, key)::binary>>
    else
      <<fin::1, 0::3, opcode::4, 0::1, len::bitstring, payload::binary>>
    end
  end

  def send_frame(socket, opcode, payload, opts \\ []),
    do: :gen_tcp.send(socket, frame(opcode, payload, opts))

  # Reads one server frame: {opcode, payload, rest}.
  def recv_frame(socket, buffer \\ "") do
    case parse(buffer) do
      {:ok, opcode, payload, rest} ->
        {opcode, payload, rest}

      :more ->
        case :gen_tcp.recv(socket, 0, 5_000) do
          {:ok, data} -> recv_frame(socket, buffer <> data)
          {:error, reason} -> {:error, reason}
        end
    end
  end

  defp parse(
         <<_fin::1, _::3, opcode::4, 0::1, 127::7, size::64, payload::binary-size(size),
           rest::binary>>
       ),
       do: {:ok, opcode, payload, rest}

  defp parse(
         <<_fin::1, _::3, opcode::4, 0::1, 126::7, size::16, payload::binary-size(size),
           rest::binary>>
       ),
       do: {:ok, opcode, payload, rest}

  defp parse(
         <<_fin::1, _::3, opcode::4, 0::1, size::7, payload::binary-size(size), rest::binary>>
       )
       when size < 126,
       do: {:ok, opcode, payload, rest}

  defp parse(_), do: :more

  # Reads frames until a close; returns {code, reason}.
  def await_close(socket, buffer \\ "") do
    case recv_frame(socket, buffer) do
      {8, <<code::16, reason::binary>>, _} -> {code, reason}
      {8, <<>>, _} -> {nil, ""}
      {_opcode, _payload, rest} -> await_close(socket, rest)
      {:error, reason} -> {:error, reason}
    end
  end
end
