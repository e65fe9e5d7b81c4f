# Switchboard.Gateway: zstd-stream against zlib-stream on MESSAGE_CREATE
# (bytes and compression CPU per message, memory per connection), frames per
# second and publish-to-client latency to 1,000 real WebSocket clients (npm's
# ws under Node, JSON + zstd-stream, fzstd decoding), and 10,000 clients held.
#
#   MIX_ENV=prod mix run bench/gateway.exs
#   SWITCHBOARD_BENCH_QUICK=1 MIX_ENV=prod mix run bench/gateway.exs
#
# Targets (issue 13): zstd bytes <= 0.85x zlib's, compression CPU <= 0.7x
# zlib's; >= 100,000 frames/s to 1,000 clients with p99 <= 100 ms; 10,000
# clients held with every message delivered in order. Clients run on the same
# 2-core machine as the server, so client decoding competes with the server.
Code.require_file("support/harness.ex", __DIR__)
Code.require_file("support/scheduler_probe.ex", __DIR__)

alias Switchboard.Bench.{Harness, SchedulerProbe}
alias Switchboard.Gateway
alias Switchboard.Gateway.Compressor.{Zlib, Zstd}

defmodule GatewayBench do
  @load Path.expand("../test/js/load.js", __DIR__)

  def message_create(n) do
    author = rem(n * 7919, 500)

    %{
      "type" => 0,
      "tts" => false,
      "timestamp" =>
        "2026-12-05T21:#{pad(rem(n, 60))}:#{pad(rem(n * 7, 60))}.#{100_000 + n}+00:00",
      "pinned" => false,
      "mentions" => [],
      "mention_roles" => [],
      "mention_everyone" => false,
      "member" => %{
        "roles" => ["1180000000000000#{100 + rem(n, 5)}"],
        "premium_since" => nil,
        "pending" => false,
        "nick" => nil,
        "mute" => false,
        "joined_at" => "2024-03-0#{rem(author, 9) + 1}T12:00:00.000000+00:00",
        "flags" => 0,
        "deaf" => false,
        "avatar" => nil
      },
      "id" => Integer.to_string(1_313_000_000_000_000_000 + n * 4_194_304 + rem(n * 31, 4096)),
      "flags" => 0,
      "embeds" => [],
      "edited_timestamp" => nil,
      "content" => content(n),
      "components" => [],
      "channel_id" => "1180000000000000201",
      "author" => %{
        "username" => word(author * 3) <> "_" <> word(author * 7 + 1),
        "public_flags" => 0,
        "id" => Integer.to_string(1_180_000_000_000_000_000 + author * 4_194_304),
        "global_name" => "User #{author}",
        "discriminator" => "0",
        "avatar" => hex(author, 16)
      },
      "attachments" => [],
      "guild_id" => "1180000000000000000"
    }
  end

  # Chat-like text: 2 to 16 words drawn (deterministically) from a
  # vocabulary of 256, so the content varies as real messages do.
  defp content(n) do
    count = 2 + rem(n * 13, 15)
    Enum.map_join(0..(count - 1), " ", &word(n * 31 + &1 * 17 + div(n, 3)))
  end

  defp word(i) do
    <<a, b, c, d>> = :crypto.hash(:md5, Integer.to_string(rem(i, 256))) |> binary_part(0, 4)
    letters = ~c"etaoinshrdlucmfwypvbgkjqxz"
    len = 2 + rem(a, 7)
    for k <- 0..(len - 1), into: "", do: <<Enum.at(letters, rem(b * (k + 1) + c * k + d, 26))>>
  end

  # A fixed pseudo-random hex string per key (avatar hashes).
  defp hex(key, bytes),
    do:
      :crypto.hash(:sha256, Integer.to_string(key))
      |> binary_part(0, bytes)
      |> Base.encode16(case: :lower)

  defp pad(n), do: n |> Integer.to_string() |> String.pad_leading(2, "0")

  def payloads(count) do
    for n <- 1..count do
      prepared = Switchboard.Codec.JSON.prepare("MESSAGE_CREATE", message_create(n))
      IO.iodata_to_binary(Switchboard.Codec.JSON.frame(prepared, n))
    end
  end

  # Bytes per message over a stream's steady state (after the first 20).
  def bytes(compressor, payloads) do
    stream = compressor.new([])

    sizes = for payload <- payloads, do: IO.iodata_length(compressor.compress(stream, payload))

    steady = Enum.drop(sizes, 20)
    Enum.sum(steady) / length(steady)
  end

  # CPU ms (all schedulers, :runtime) and wall µs to compress every payload
  # `reps` times through one stream.
  def cpu(compressor, payloads, reps) do
    parent = self()

    spawn_link(fn ->
      stream = compressor.new([])
      {cpu0, _} = :erlang.statistics(:runtime)
      t0 = System.monotonic_time(:microsecond)

      for _ <- 1..reps, payload <- payloads, do: compressor.compress(stream, payload)

      t1 = System.monotonic_time(:microsecond)
      {cpu1, _} = :erlang.statistics(:runtime)
      send(parent, {:cpu, cpu1 - cpu0, t1 - t0})
    end)

    receive do
      {:cpu, cpu, wall} -> {cpu, wall}
    end
  end

  def memory_per_stream(compressor, count) do
    :erlang.garbage_collect()
    vm0 = :erlang.memory(:total)
    native0 = Switchboard.Zstd.native_memory().bytes
    streams = for _ <- 1..count, do: compressor.new([])
    for s <- streams, do: compressor.compress(s, "{\"op\":11}")
    vm1 = :erlang.memory(:total)
    native1 = Switchboard.Zstd.native_memory().bytes
    result = {(vm1 - vm0) / count, (native1 - native0) / count}
    for s <- streams, do: compressor.close(s)
    result
  end

  def run_clients(name, clients, compress, fun) do
    guild_id = hd(Gateway.config(name).guild_ids)

    port =
      Port.open({:spawn_executable, System.find_executable("node")}, [
        :binary,
        {:line, 65_536},
        args: [@load, Gateway.url(name), "bench", "#{clients}", "#{fun.(:count)}", "1", compress]
      ])

    receive do
      {^port, {:data, {:eol, "READY " <> _}}} -> :ok
    after
      600_000 -> raise "clients did not get ready"
    end

    vm = :erlang.memory(:total)
    native = Switchboard.Zstd.native_memory().bytes
    {cpu0, _} = :erlang.statistics(:runtime)
    fun.({:publish, guild_id})

    result =
      receive do
        {^port, {:data, {:eol, line}}} -> Switchboard.Json.decode!(line)
      after
        120_000 -> raise "no result from the clients"
      end

    {cpu1, _} = :erlang.statistics(:runtime)

    result =
      Map.put(
        result,
        "server_cpu_us_per_frame",
        (cpu1 - cpu0) * 1000 / max(result["received"], 1)
      )

    Port.close(port)
    Map.merge(result, %{"vm_bytes" => vm, "native_bytes" => native})
  end

  # Publishes `count` messages at `rate` per second: message n is due at
  # n / rate seconds after the start.
  def paced(name, guild_id, count, rate) do
    start = System.monotonic_time(:microsecond)

    for n <- 0..(count - 1) do
      wait = div(start + div(n * 1_000_000, rate) - System.monotonic_time(:microsecond), 1000)
      if wait > 0, do: Process.sleep(wait)
      content = "n:#{n}:#{System.os_time(:microsecond)}"
      message = Map.put(message_create(n), "content", content)
      :ok = Gateway.publish(name, guild_id, "MESSAGE_CREATE", message)
    end

    :ok
  end
end

IO.puts(Harness.machine() |> inspect())

# --- compression -------------------------------------------------------------
payloads = GatewayBench.payloads(Harness.pick(1_000, 300))
json_bytes = Enum.sum(Enum.map(payloads, &byte_size/1)) / length(payloads)
zlib_bytes = GatewayBench.bytes(Zlib, payloads)
zstd_bytes = GatewayBench.bytes(Zstd, payloads)

reps = Harness.pick(20, 5)

rounds =
  for _ <- 1..Harness.pick(5, 3) do
    {GatewayBench.cpu(Zlib, payloads, reps), GatewayBench.cpu(Zstd, payloads, reps)}
  end

per_message = fn {cpu_ms, wall_us} ->
  {cpu_ms * 1000 / (reps * length(payloads)), wall_us / (reps * length(payloads))}
end

median = fn list -> Enum.at(Enum.sort(list), div(length(list), 2)) end
zlib_cpu = median.(for {z, _} <- rounds, do: elem(per_message.(z), 0))
zstd_cpu = median.(for {_, s} <- rounds, do: elem(per_message.(s), 0))
zlib_wall = median.(for {z, _} <- rounds, do: elem(per_message.(z), 1))
zstd_wall = median.(for {_, s} <- rounds, do: elem(per_message.(s), 1))

{zlib_vm, _} = GatewayBench.memory_per_stream(Zlib, 200)
{zstd_vm, zstd_native} = GatewayBench.memory_per_stream(Zstd, 200)

IO.puts("""

### Compression, MESSAGE_CREATE (#{length(payloads)} messages, JSON #{round(json_bytes)} B each)

| measure | zlib-stream | zstd-stream | zstd/zlib | target |
|---|---|---|---|---|
| bytes per message (steady state) | #{Float.round(zlib_bytes, 1)} | #{Float.round(zstd_bytes, 1)} | #{Harness.format_ratio(zstd_bytes / zlib_bytes)} | ≤ 0.85× |
| CPU per message (median of #{length(rounds)} interleaved rounds) | #{Float.round(zlib_cpu, 2)} µs | #{Float.round(zstd_cpu, 2)} µs | #{Harness.format_ratio(zstd_cpu / zlib_cpu)} | ≤ 0.7× |
| wall per message (same rounds) | #{Float.round(zlib_wall, 2)} µs | #{Float.round(zstd_wall, 2)} µs | #{Harness.format_ratio(zstd_wall / zlib_wall)} | |
| memory per connection's stream | #{round(zlib_vm / 1024)} KiB (VM) | #{round(zstd_native / 1024)} KiB native + #{round(zstd_vm / 1024)} KiB VM | #{Harness.format_ratio((zstd_native + zstd_vm) / zlib_vm)} | reported |
""")

# --- scheduler: zstd compression of large frames -------------------------------
# 32 KiB is the largest message compressed inline; 4 MB goes dirty. Random
# hex (compressible 2:1) makes zstd work hard. The stream lives in
# persistent_term so no worker copies the input.
probe_ms = Harness.pick(3000, 1000)

for {label, size} <- [{"32 KiB (inline)", 32 * 1024}, {"4 MB (dirty)", 4_000_000}] do
  :persistent_term.put(
    {:gateway_bench, size},
    :crypto.strong_rand_bytes(div(size, 2)) |> Base.encode16()
  )

  stats =
    SchedulerProbe.measure(
      fn ->
        # One stream per worker process, as one per connection.
        stream =
          Process.get(:zstd_stream) ||
            Process.put(:zstd_stream, Switchboard.Zstd.compress_stream()) ||
            Process.get(:zstd_stream)

        Switchboard.Zstd.compress(stream, :persistent_term.get({:gateway_bench, size}))
      end,
      duration_ms: probe_ms
    )

  IO.puts(
    "probe while Switchboard.Zstd.compress of #{label} in a loop: p50 #{round(stats.p50_us)} µs, " <>
      "p99 #{round(stats.p99_us)} µs, max #{round(stats.max_us)} µs (#{stats.calls} calls)"
  )
end

idle = SchedulerProbe.measure(fn -> Process.sleep(1) end, duration_ms: 1000)

IO.puts(
  "probe idle: p50 #{round(idle.p50_us)} µs, p99 #{round(idle.p99_us)} µs, max #{round(idle.max_us)} µs"
)

# --- 1,000 clients, JSON + zstd ---------------------------------------------------
{:ok, _} =
  Gateway.start_link(name: :bench_gateway, port: 0, tokens: ["bench"], guilds: 1, members: 20)

clients = Harness.pick(1_000, 300)

# Offered: `rate` messages per second to every client for `seconds`; the
# compression-free row shows how much of the gap is the compression (fzstd
# decoding in the clients and zstd in the server), not the gateway.
for {compress, rate, seconds} <-
      Harness.pick([{"zstd", 100, 2}, {"none", 100, 2}], [{"zstd", 50, 2}]) do
  count = rate * seconds

  result =
    GatewayBench.run_clients(:bench_gateway, clients, compress, fn
      :count -> count
      {:publish, guild_id} -> GatewayBench.paced(:bench_gateway, guild_id, count, rate)
    end)

  IO.puts(
    "#{clients} clients, JSON+#{compress}, #{rate} msg/s offered (#{rate * clients} frames/s): " <>
      "#{round(result["frames_per_s"])} frames/s delivered, p50 #{Float.round(result["p50_ms"] * 1.0, 1)} ms, " <>
      "p99 #{Float.round(result["p99_ms"] * 1.0, 1)} ms, #{result["received"]}/#{result["expected"]} received, " <>
      "#{result["out_of_order"]} out of order; #{Float.round(result["wire_bytes"] / max(result["received"], 1), 1)} wire B/frame; " <>
      "server CPU #{Float.round(result["server_cpu_us_per_frame"] * 1.0, 1)} µs/frame " <>
      "(#{round(1.0e6 / max(result["server_cpu_us_per_frame"], 0.001))} frames/s per core)"
  )
end

# --- 10,000 clients held ------------------------------------------------------
held = Harness.pick(10_000, 2_000)
:erlang.garbage_collect()
vm_before = :erlang.memory(:total)

{:ok, _} =
  Gateway.start_link(name: :held_gateway, port: 0, tokens: ["bench"], guilds: 1, members: 5)

result =
  GatewayBench.run_clients(:held_gateway, held, "none", fn
    :count -> 10
    {:publish, guild_id} -> GatewayBench.paced(:held_gateway, guild_id, 10, 10)
  end)

IO.puts(
  "#{held} clients held (JSON, no compression): #{result["received"]}/#{result["expected"]} messages received, " <>
    "#{result["out_of_order"]} out of order, #{result["closed_early"]} closed early; " <>
    "VM memory per connection #{round((result["vm_bytes"] - vm_before) / held / 1024)} KiB; p99 #{Float.round(result["p99_ms"] * 1.0, 1)} ms"
)
