# The simulator over real WebSockets against issue 13's target, beside the
# floors that decide it on this machine, all from the same run:
#
#   MIX_ENV=prod mix run bench/websocket_sim.exs
#   SWITCHBOARD_BENCH_QUICK=1 MIX_ENV=prod mix run bench/websocket_sim.exs
#
# Target: >= 100,000 frames/s delivered to 1,000 real clients in one guild
# (JSON, zstd-stream), p99 publish-to-client <= 100 ms, clients on the same
# machine. Runs (`Switchboard.Sim.Websocket`, 1,000 clients each):
#
#   target      the gateway, clients decode and check every frame (default window)
#   latency     the same with 1,000 frames in flight at most (one message)
#   server      the gateway, clients only count frames: the BEAM's CPU per frame
#   server_raw  the same without compression
#   small_zstd  as target, with a smaller zstd context than Discord's (level 3,
#               window log 16, chain and hash log 14): what the context costs
#   clients     a Node ws server pushing pre-built gateway frames to the same
#               checking clients: the clients' CPU per frame with no BEAM
#
# and fzstd's own decoding cost per frame (test/js/decode_bench.js).
#
# CPU per frame is measured on each side (the VM's runtime, the Node
# processes' cpuUsage), so it holds on a shared machine where frames/s does
# not; "ceiling" is what the machine's cores reach at that cost with nothing
# else running (cores x 1 s / CPU per frame).
Code.require_file("support/harness.ex", __DIR__)

alias Switchboard.Bench.Harness
alias Switchboard.Sim.Websocket

duration = Harness.pick(15.0, 5.0)
cores = System.schedulers_online()
base = [clients: 1_000, duration: duration, progress: false]

runs = [
  target: [],
  latency: [window: 1_000],
  server: [client_mode: :discard],
  server_raw: [client_mode: :discard, compress: :none],
  small_zstd: [zstd: [level: 3, window_log: 16, chain_log: 14, hash_log: 14]],
  clients: [server: :node]
]

reports =
  for {name, opts} <- runs do
    report = Websocket.run(Keyword.merge(base, opts))
    if report.verdict != "ok", do: raise("#{name}: verdict #{report.verdict}")
    {name, report}
  end

# fzstd's own cost per frame, on the frames the Node floor server pushes.
frames_file = Path.join(System.tmp_dir!(), "switchboard_bench_frames")
File.write!(frames_file, Websocket.prebuilt_frames(1_000))
decode_bench = Path.join(Path.dirname(Websocket.script()), "decode_bench.js")
{decode_json, 0} = System.cmd("node", [decode_bench, frames_file])
File.rm(frames_file)
decode = Switchboard.Json.decode!(decode_json)

ceiling = fn us -> if us > 0, do: round(cores * 1_000_000 / us) end
p99 = fn report -> if report.latency_ms, do: "#{report.latency_ms.p99} ms", else: "-" end

IO.puts("""
### WebSocket simulator (#{Date.utc_today()}, #{Harness.machine().cpu}, #{cores} cores, \
#{duration} s a run#{if Harness.quick?(), do: ", quick mode", else: ""})

| run | frames/s | p99 | server CPU/frame | clients CPU/frame | ceiling, both sides | ceiling, that side only |
|---|---:|---:|---:|---:|---:|---:|\
""")

for {name, r} <- reports do
  side =
    case name do
      n when n in [:server, :server_raw] -> ceiling.(r.server_cpu_us_per_frame)
      :clients -> ceiling.(r.client_cpu_us_per_frame)
      _ -> "-"
    end

  IO.puts(
    "| #{name} | #{r.frames_per_s} | #{p99.(r)} | #{r.server_cpu_us_per_frame} µs " <>
      "| #{r.client_cpu_us_per_frame} µs " <>
      "| #{ceiling.(r.server_cpu_us_per_frame + r.client_cpu_us_per_frame)} | #{side} |"
  )
end

IO.puts("""

fzstd decoding alone (test/js/decode_bench.js, best of 3): one stream \
#{decode["one_stream_us"]} µs/frame (#{decode["one_stream_parse_us"]} µs with JSON.parse), \
250 streams interleaved #{decode["streams_250_us"]} µs/frame (#{decode["streams_250_parse_us"]} µs with JSON.parse)\
""")

target = reports[:target]
server_us = reports[:server].server_cpu_us_per_frame
clients_us = reports[:clients].client_cpu_us_per_frame

IO.puts("""

target 100,000 frames/s, p99 <= 100 ms; measured #{target.frames_per_s} frames/s \
(#{Float.round(target.frames_per_s / 100_000, 3)}x), p99 #{p99.(target)}; floor: \
BEAM alone #{server_us} µs/frame (ceiling #{ceiling.(server_us)} frames/s on #{cores} cores), \
clients alone #{clients_us} µs/frame (ceiling #{ceiling.(clients_us)}), both \
#{ceiling.(server_us + clients_us)} frames/s (#{Float.round(ceiling.(server_us + clients_us) / 100_000, 3)}x the target)
""")
