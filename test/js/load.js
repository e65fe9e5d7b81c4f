// Many real clients at once (npm's ws): each connects, identifies, heartbeats,
// and checks that it receives every MESSAGE_CREATE in order. Published
// messages carry "n:<index>:<publish wall-clock µs>" as content, so each
// client also measures publish-to-client latency.
//
// usage: node load.js URL TOKEN CLIENTS MESSAGES GUILDS [zstd|zlib|none]
// Prints "READY <clients>" once every client has READY and its GUILD_CREATEs,
// then one JSON line with the results once every client has every message
// (or 60 s passed since the first message).
'use strict';
const WebSocket = require('ws');
const fzstd = require('fzstd');
const zlib = require('zlib');
const { performance } = require('perf_hooks');

const [url, token, clientsArg, messagesArg, guildsArg, compressArg] = process.argv.slice(2);
const clients = Number(clientsArg);
const messages = Number(messagesArg);
const guilds = Number(guildsArg);
const compress = compressArg || 'none';
const query = '/?v=10&encoding=json' + (compress === 'none' ? '' : `&compress=${compress}-stream`);
const nowMicros = () => (performance.timeOrigin + performance.now()) * 1000;

let ready = 0;
let done = 0;
let firstAt = null;
let lastAt = null;
let received = 0;
let outOfOrder = 0;
let wireBytes = 0;
let closedEarly = 0;
const latencies = [];

function zstdDecoder() {
  let out = [];
  const stream = new fzstd.Decompress((chunk) => out.push(chunk));
  return (buf) => {
    stream.push(new Uint8Array(buf.buffer, buf.byteOffset, buf.length));
    const text = Buffer.concat(out.map((c) => Buffer.from(c.buffer, c.byteOffset, c.length))).toString('utf8');
    out = [];
    return text;
  };
}

function zlibDecoder() {
  // Inflate synchronously through the private sync path Node's own
  // zlib.inflateSync uses, keeping one context for the stream.
  const inflate = zlib.createInflate();
  return (buf) => inflate._processChunk(buf, zlib.constants.Z_SYNC_FLUSH).toString('utf8');
}

function start(i) {
  const ws = new WebSocket(url + query, { perMessageDeflate: false });
  const decode = compress === 'zstd' ? zstdDecoder() : compress === 'zlib' ? zlibDecoder() : null;
  let seq = null;
  let creates = 0;
  let expected = 0;
  let timer = null;
  ws.on('message', (data) => {
    wireBytes += data.length;
    const text = decode ? decode(data) : data.toString('utf8');
    const payload = JSON.parse(text);
    if (payload.s != null) seq = payload.s;
    if (payload.op === 10) {
      timer = setInterval(() => ws.send(JSON.stringify({ op: 1, d: seq })), payload.d.heartbeat_interval);
      ws.send(JSON.stringify({ op: 2, d: { token, intents: 513 | (1 << 15), properties: { os: 'linux', browser: 'load', device: 'load' } } }));
    } else if (payload.op === 1) {
      ws.send(JSON.stringify({ op: 1, d: seq }));
    } else if (payload.t === 'GUILD_CREATE') {
      if (++creates === guilds && ++ready === clients) process.stdout.write(`READY ${clients}\n`);
    } else if (payload.t === 'MESSAGE_CREATE') {
      const now = nowMicros();
      const [, n, at] = payload.d.content.split(':');
      if (firstAt === null) firstAt = now;
      lastAt = now;
      received++;
      if (Number(n) !== expected) outOfOrder++;
      expected = Number(n) + 1;
      if ((i + received) % 7 === 0) latencies.push((now - Number(at)) / 1000);
      if (expected === messages && ++done === clients) finish();
    }
  });
  ws.on('close', () => {
    if (timer) clearInterval(timer);
    if (expected < messages) closedEarly++;
  });
  ws.on('error', () => {});
}

function finish() {
  latencies.sort((a, b) => a - b);
  const pick = (q) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : null);
  const seconds = (lastAt - firstAt) / 1e6;
  process.stdout.write(JSON.stringify({
    clients, messages, received, expected: clients * messages, out_of_order: outOfOrder,
    closed_early: closedEarly, seconds, frames_per_s: received / seconds,
    p50_ms: pick(0.5), p99_ms: pick(0.99), wire_bytes: wireBytes,
  }) + '\n');
  process.exit(0);
}

// Connect in waves so the listen backlog is never the bottleneck.
let started = 0;
const wave = () => {
  for (let k = 0; k < 250 && started < clients; k++) start(started++);
  if (started < clients) setTimeout(wave, 20);
};
wave();
setInterval(() => {
  if (firstAt !== null && nowMicros() - firstAt > 60e6) finish();
}, 1000);
