defmodule Switchboard.Metrics.StatsD do
  @moduledoc """
  Sends metrics to StatsD or DogStatsD over UDP every `flush_ms`.

      children = [
        {Switchboard.Metrics.StatsD, host: "127.0.0.1", port: 8125, prefix: "chat"}
      ]

  or `config :switchboard, metrics_reporters: [{Switchboard.Metrics.StatsD, port: 8125}]`
  to have the application start it.

  Each flush reads a snapshot and sends, in datagrams of at most
  `max_packet` bytes, one line per metric:

    * counters as `name:delta|c`, where `delta` is the counter's value less
      the value sent at the last flush (counters never reset: an increment
      made during a flush is in the next delta, none is lost or counted
      twice). A delta of 0 is not sent. If a send fails, the same deltas are
      sent again at the next flush;
    * gauges as `name:value|g`, every flush;
    * histograms as `name:value|h|@rate`, one line per bucket that gained
      values since the last flush: `value` is the bucket's midpoint (within
      0.4% of every value in it) and `@rate` is `1/n` for `n` new values, so
      the server counts `n` samples (the line has no rate when `n` is 1).

  Tags are sent DogStatsD style, `|#key:value,key:value`.

  ## Options

    * `:host` - the server, a hostname or address (default `"127.0.0.1"`)
    * `:port` - its UDP port (default `8125`)
    * `:flush_ms` - the flush interval (default `10_000`)
    * `:prefix` - prepended to every name with a dot (default none)
    * `:max_packet` - bytes per datagram (default `1432`)
    * `:metrics` - the metrics module to read (default `Switchboard.Metrics`;
      `Switchboard.Metrics.Pure` works too)
    * `:name` - the reporter's registered name (default none)
  """
  use GenServer

  @type option ::
          {:host, String.t() | :inet.ip_address()}
          | {:port, :inet.port_number()}
          | {:flush_ms, pos_integer()}
          | {:prefix, String.t()}
          | {:max_packet, pos_integer()}
          | {:metrics, module()}
          | {:name, GenServer.name()}

  @doc "Starts the reporter (see the module doc for `opts`)."
  @spec start_link([option()]) :: GenServer.on_start()
  def start_link(opts \\ []) do
    {name, opts} = Keyword.pop(opts, :name)
    GenServer.start_link(__MODULE__, opts, if(name, do: [name: name], else: []))
  end

  @doc "Flushes now (also done every `flush_ms`); returns `:ok` or `{:error, reason}`."
  @spec flush(GenServer.server()) :: :ok | {:error, term()}
  def flush(reporter), do: GenServer.call(reporter, :flush)

  @impl true
  def init(opts) do
    host = Keyword.get(opts, :host, "127.0.0.1")
    port = Keyword.get(opts, :port, 8125)
    flush_ms = Keyword.get(opts, :flush_ms, 10_000)
    prefix = Keyword.get(opts, :prefix)
    max_packet = Keyword.get(opts, :max_packet, 1432)

    unless is_integer(port) and port in 1..65_535,
      do: raise(ArgumentError, "expected :port to be a UDP port, got: #{inspect(port)}")

    unless is_integer(flush_ms) and flush_ms > 0,
      do:
        raise(
          ArgumentError,
          "expected :flush_ms to be a positive integer, got: #{inspect(flush_ms)}"
        )

    unless is_integer(max_packet) and max_packet >= 64,
      do:
        raise(
          ArgumentError,
          "expected :max_packet to be at least 64, got: #{inspect(max_packet)}"
        )

    {:ok, address} = resolve(host)
    {:ok, socket} = :gen_udp.open(0, [:binary, active: false])
    Process.flag(:trap_exit, true)

    state = %{
      socket: socket,
      address: address,
      port: port,
      flush_ms: flush_ms,
      prefix: if(prefix in [nil, ""], do: "", else: "#{prefix}."),
      max_packet: max_packet,
      metrics: Keyword.get(opts, :metrics, Switchboard.Metrics),
      sent_counters: %{},
      sent_buckets: %{}
    }

    schedule(state)
    {:ok, state}
  end

  defp resolve(host) when is_tuple(host), do: {:ok, host}

  defp resolve(host) do
    case :inet.getaddr(String.to_charlist(to_string(host)), :inet) do
      {:ok, address} ->
        {:ok, address}

      {:error, reason} ->
        raise ArgumentError, "cannot resolve StatsD host #{inspect(host)}: #{reason}"
    end
  end

  defp schedule(state), do: Process.send_after(self(), :flush, state.flush_ms)

  @impl true
  def handle_call(:flush, _from, state) do
    {result, state} = do_flush(state)
    {:reply, result, state}
  end

  @impl true
  def handle_info(:flush, state) do
    {_result, state} = do_flush(state)
    schedule(state)
    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  # A last flush when the supervisor stops us: the final interval is not lost.
  @impl true
  def terminate(_reason, state), do: do_flush(state)

  defp do_flush(state) do
    snapshot = state.metrics.snapshot(values: true)
    {counter_lines, sent_counters} = counter_lines(snapshot.counters, state)
    gauge_lines = for {key, value} <- snapshot.gauges, do: line(state, key, number(value), "g")
    {histogram_lines, sent_buckets} = histogram_lines(snapshot.histograms, state)

    case send_lines(state, counter_lines ++ gauge_lines ++ histogram_lines) do
      :ok -> {:ok, %{state | sent_counters: sent_counters, sent_buckets: sent_buckets}}
      # Nothing is marked sent: the next flush sends the same deltas again.
      {:error, _} = error -> {error, state}
    end
  end

  defp counter_lines(counters, state) do
    lines =
      for {key, value} <- counters,
          delta = value - Map.get(state.sent_counters, key, 0),
          delta != 0,
          do: line(state, key, Integer.to_string(delta), "c")

    {lines, counters}
  end

  defp histogram_lines(histograms, state) do
    {lines, sent} =
      Enum.map_reduce(histograms, %{}, fn {key, summary}, sent ->
        before = Map.get(state.sent_buckets, key, %{})

        lines =
          for {value, count} <- summary.values,
              new = count - Map.get(before, value, 0),
              new > 0 do
            line(state, key, Integer.to_string(value), "h", new)
          end

        {lines, Map.put(sent, key, Map.new(summary.values))}
      end)

    {Enum.concat(lines), sent}
  end

  defp line(state, {name, tags}, value, type, samples \\ 1) do
    rate = if samples == 1, do: "", else: "|@" <> rate(samples)

    [state.prefix, sanitize(to_string(name)), ?:, value, ?|, type, rate, tags(tags)]
    |> IO.iodata_to_binary()
  end

  # 1/n with enough digits that the server's round(1 / rate) gives back n.
  defp rate(samples), do: :erlang.float_to_binary(1 / samples, [{:decimals, 12}, :compact])

  defp tags([]), do: ""

  defp tags(tags) do
    [
      "|#",
      Enum.map_join(tags, ",", fn {k, v} ->
        "#{sanitize(to_string(k))}:#{sanitize(to_string(v))}"
      end)
    ]
  end

  # ':', '|', '@', ',' and '#' delimit StatsD fields; newlines delimit lines.
  defp sanitize(text), do: String.replace(text, ~r/[:|@,#\n\r]/, "_")

  defp number(value) when is_integer(value), do: Integer.to_string(value)
  defp number(value), do: :erlang.float_to_binary(value, [:short])

  defp send_lines(_state, []), do: :ok

  defp send_lines(state, lines) do
    lines
    |> packets(state.max_packet)
    |> Enum.reduce_while(:ok, fn packet, :ok ->
      case :gen_udp.send(state.socket, state.address, state.port, packet) do
        :ok -> {:cont, :ok}
        {:error, _} = error -> {:halt, error}
      end
    end)
  end

  # Lines joined by "\n" into datagrams of at most max_packet bytes (a line
  # longer than that goes alone).
  defp packets(lines, max) do
    {packets, current, _size} =
      Enum.reduce(lines, {[], [], 0}, fn line, {packets, current, size} ->
        cond do
          current == [] ->
            {packets, [line], byte_size(line)}

          size + 1 + byte_size(line) <= max ->
            {packets, [line, "\n" | current], size + 1 + byte_size(line)}

          true ->
            {[current |> Enum.reverse() |> IO.iodata_to_binary() | packets], [line],
             byte_size(line)}
        end
      end)

    last = if current == [], do: [], else: [current |> Enum.reverse() |> IO.iodata_to_binary()]
    Enum.reverse(packets, last)
  end
end
