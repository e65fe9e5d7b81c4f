# Switchboard.Gateway.Frames: what a gateway guild pays once per event for
# the variants its sessions need (JSON; ETF when some session speaks it; for
# MESSAGE_CREATE the variant without content when some session lacks
# MESSAGE_CONTENT), against preparing the JSON frame only
# (Switchboard.Codec.JSON), and what each session pays to frame it (select +
# splice) against the bare JSON splice.
#
#   MIX_ENV=prod mix run bench/gateway_frames.exs
#   SWITCHBOARD_BENCH_QUICK=1 MIX_ENV=prod mix run bench/gateway_frames.exs
Code.require_file("support/harness.ex", __DIR__)

alias Switchboard.Bench.Harness
alias Switchboard.Codec.JSON
alias Switchboard.Gateway.Frames

# A message as the REST route publishes it, with a kilobyte of content.
message =
  Switchboard.Gateway.Rest.message(
    Switchboard.Gateway.Demo.bot_user(0),
    "1323802873040994306",
    "1323802873040994305",
    String.duplicate("a message of a kilobyte or so. ", 30)
  )

all_intents = 513 + 32_768
batch = 10_000
frames = 200_000
batches = Harness.pick(20, 5)

# CPU time (the VM's, `:erlang.statistics(:runtime)`, ms) of `batches`
# batches of `batch` calls, as per-call ns: a busy machine slows the wall
# clock, not the work done.
cpu = fn fun, batch ->
  fn ->
    for _ <- 1..3, do: fun.()
    _ = :erlang.statistics(:runtime)

    for _ <- 1..batches do
      fun.()
      {_, ms} = :erlang.statistics(:runtime)
      ms * 1.0e6 / batch
    end
  end
end

# A guild's needs: sessions speaking ETF, sessions without MESSAGE_CONTENT.
prepare = fn etf, redacted ->
  needs = Frames.needs()
  :atomics.put(needs, 1, etf)
  :atomics.put(needs, 2, redacted)
  cpu.(fn -> for _ <- 1..batch, do: Frames.prepare("MESSAGE_CREATE", message, needs) end, batch)
end

json_prepared = JSON.prepare("MESSAGE_CREATE", message)
frames_prepared = Frames.prepare("MESSAGE_CREATE", message)
size = byte_size(Switchboard.Json.encode!(message))

Harness.run_latency("gateway-frames", [
  [
    name: "prepare a #{size} B MESSAGE_CREATE once per event (CPU time)",
    baseline:
      {"Codec.JSON.prepare (JSON only)",
       cpu.(fn -> for _ <- 1..batch, do: JSON.prepare("MESSAGE_CREATE", message) end, batch)},
    candidates: [
      {"Frames.prepare, JSON sessions with MESSAGE_CONTENT only", prepare.(0, 0)},
      {"Frames.prepare, some sessions on ETF", prepare.(1, 0)},
      {"Frames.prepare, some on ETF, some without MESSAGE_CONTENT", prepare.(1, 1)}
    ]
  ],
  [
    name: "frame it for each session (CPU time, batches of #{frames})",
    baseline:
      {"Codec.JSON.frame",
       cpu.(fn -> for seq <- 1..frames, do: JSON.frame(json_prepared, seq) end, frames)},
    candidates: [
      {"Frames.select + frame",
       cpu.(
         fn ->
           for seq <- 1..frames do
             {codec, p} =
               Frames.select("MESSAGE_CREATE", frames_prepared, :json, all_intents, "7")

             codec.frame(p, seq)
           end
         end,
         frames
       )}
    ]
  ]
])
