// What a client's zstd-stream decoding costs (npm's fzstd, the decoder the
// simulator's clients use), on pre-built gateway frames: CPU µs per frame
// with one stream (its window stays in cache) and with 250 streams
// interleaved (as one of the simulator's Node processes holds them), with and
// without JSON.parse. Used by bench/websocket_sim.exs.
//
// usage: node decode_bench.js FRAMES_FILE   (frames as floor_server.js reads
// them; the first three are HELLO, READY, GUILD_CREATE)
// stdout: one JSON line {"one_stream_us":..,"one_stream_parse_us":..,
//                         "streams_250_us":..,"streams_250_parse_us":..}
'use strict';
const fs = require('fs');
const fzstd = require('fzstd');

const bytes = fs.readFileSync(process.argv[2]);
const frames = [];
for (let at = 0; at < bytes.length;) {
  const length = bytes.readUInt32BE(at);
  frames.push(bytes.subarray(at + 4, at + 4 + length));
  at += 4 + length;
}

function run(streams, perStream, parse) {
  let out = null;
  const decoders = [];
  for (let i = 0; i < streams; i++) decoders.push(new fzstd.Decompress((chunk) => { out = chunk; }));
  const before = process.cpuUsage();
  let count = 0;
  for (let f = 0; f < perStream; f++) {
    const frame = frames[f];
    for (let i = 0; i < streams; i++) {
      decoders[i].push(new Uint8Array(frame.buffer, frame.byteOffset, frame.length));
      if (parse && f >= 3) JSON.parse(Buffer.from(out.buffer, out.byteOffset, out.length).toString('utf8'));
      count++;
    }
  }
  const cpu = process.cpuUsage(before);
  return (cpu.user + cpu.system) / count;
}

// Best of three rounds (the machine is shared).
const best = (f) => Math.min(f(), f(), f());
const perStream = Math.min(frames.length, 1000);
const round2 = (x) => Math.round(x * 100) / 100;
process.stdout.write(JSON.stringify({
  one_stream_us: round2(best(() => run(1, perStream, false))),
  one_stream_parse_us: round2(best(() => run(1, perStream, true))),
  streams_250_us: round2(best(() => run(250, 40, false))),
  streams_250_parse_us: round2(best(() => run(250, 40, true))),
}) + '\n');
