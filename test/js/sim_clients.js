// The simulator's WebSocket clients (`mix switchboard.sim --transport
// websocket`): one Node process holds many npm `ws` connections to
// Switchboard.Gateway, each a Discord client that identifies, heartbeats and
// checks every dispatch it receives.
//
// usage: node sim_clients.js URL TOKEN CLIENTS check|discard
//   URL carries the query (?v=10&encoding=json|etf[&compress=zlib-stream|zstd-stream]).
//   check:   decompress and decode every frame, check the session's sequence
//            numbers and the published message indices, measure latency.
//   discard: after GUILD_CREATE, only count frames (what the server costs
//            with clients that do almost nothing).
//
// Published MESSAGE_CREATEs carry "nonce": "<index>:<publish wall-clock µs>".
// The clients share the publisher's machine, so latency is the client's
// wall clock (performance.timeOrigin + performance.now(), in µs) minus that.
//
// stdout: "READY <clients>" once every client has its GUILD_CREATE;
//         "P <frames>" every 20 ms while the count moves (messages received);
//         one JSON line with the results after stdin said "END <published>"
//         and every client has every message (or 5 s passed with no progress).
// stdin:  "END <published>"; closing stdin exits.
'use strict';
const WebSocket = require('ws');
const fzstd = require('fzstd');
const zlib = require('zlib');
const readline = require('readline');
const { performance } = require('perf_hooks');

const [url, token, countArg, modeArg] = process.argv.slice(2);
const count = Number(countArg);
const discard = modeArg === 'discard';
const etf = /encoding=etf/.test(url);
const compress = /compress=zstd-stream/.test(url) ? 'zstd' : /compress=zlib-stream/.test(url) ? 'zlib' : null;
const nowMicros = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
process.stdout.on('error', () => process.exit(0));
const out = (line) => process.stdout.write(line + '\n');

// -- Latency histogram: the buckets of Switchboard.Session.Metrics (exact
// below 16 µs, then 8 per power of two), so the sim merges them as they are.
const BUCKETS = 16 + 8 * 40;
const histogram = new Float64Array(BUCKETS);
function bucket(us) {
  if (us < 16) return Math.max(us, 0);
  const exponent = 31 - Math.clz32(us);
  return Math.min(16 + (exponent - 4) * 8 + ((us >>> (exponent - 3)) & 7), BUCKETS - 1);
}

// -- ETF (external term format): just what the gateway sends and takes.
function etfDecode(buf) {
  let at = 1; // version byte 131
  const text = (n) => { const s = buf.toString('utf8', at, at + n); at += n; return s; };
  const atom = (name) => (name === 'nil' ? null : name === 'true' ? true : name === 'false' ? false : name);
  const term = () => {
    const tag = buf[at++];
    switch (tag) {
      case 97: return buf[at++];
      case 98: { const v = buf.readInt32BE(at); at += 4; return v; }
      case 70: { const v = buf.readDoubleBE(at); at += 8; return v; }
      case 109: { const n = buf.readUInt32BE(at); at += 4; return text(n); }
      case 100: case 118: { const n = buf.readUInt16BE(at); at += 2; return atom(text(n)); }
      case 115: case 119: { const n = buf[at++]; return atom(text(n)); }
      case 106: return [];
      case 107: { const n = buf.readUInt16BE(at); at += 2; const list = [...buf.subarray(at, at + n)]; at += n; return list; }
      case 108: {
        const n = buf.readUInt32BE(at); at += 4;
        const list = new Array(n);
        for (let i = 0; i < n; i++) list[i] = term();
        term(); // tail
        return list;
      }
      case 116: {
        const n = buf.readUInt32BE(at); at += 4;
        const map = {};
        for (let i = 0; i < n; i++) { const k = term(); map[k] = term(); }
        return map;
      }
      case 104: { const n = buf[at++]; const t = new Array(n); for (let i = 0; i < n; i++) t[i] = term(); return t; }
      case 110: {
        const n = buf[at++]; const sign = buf[at++]; let v = 0;
        for (let i = n - 1; i >= 0; i--) v = v * 256 + buf[at + i];
        at += n;
        return sign ? -v : v;
      }
      default: throw new Error(`ETF tag ${tag} not handled`);
    }
  };
  return term();
}

function etfEncode(value) {
  const parts = [Buffer.from([131])];
  const put = (v) => {
    if (v === null || v === undefined) parts.push(Buffer.from([119, 3]), Buffer.from('nil'));
    else if (v === true || v === false) { const s = String(v); parts.push(Buffer.from([119, s.length]), Buffer.from(s)); }
    else if (typeof v === 'number') { const b = Buffer.alloc(5); b[0] = 98; b.writeInt32BE(v, 1); parts.push(b); }
    else if (typeof v === 'string') { const s = Buffer.from(v); const h = Buffer.alloc(5); h[0] = 109; h.writeUInt32BE(s.length, 1); parts.push(h, s); }
    else {
      const keys = Object.keys(v); const h = Buffer.alloc(5); h[0] = 116; h.writeUInt32BE(keys.length, 1); parts.push(h);
      for (const k of keys) { put(k); put(v[k]); }
    }
  };
  put(value);
  return Buffer.concat(parts);
}

// -- Stream decompression, one context per connection.
function zstdDecoder() {
  let chunks = [];
  const stream = new fzstd.Decompress((chunk) => chunks.push(chunk));
  return (buf) => {
    stream.push(new Uint8Array(buf.buffer, buf.byteOffset, buf.length));
    const result = chunks.length === 1 ? Buffer.from(chunks[0].buffer, chunks[0].byteOffset, chunks[0].length)
      : Buffer.concat(chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.length)));
    chunks = [];
    return result;
  };
}

function zlibDecoder() {
  // One inflate context for the stream; a message is complete when it ends
  // 00 00 ff ff. Node's zlib streams are asynchronous: messages are written
  // and flushed one after the other, so each output is its message's.
  const inflate = zlib.createInflate();
  let pending = [];
  let chunks = [];
  inflate.on('data', (chunk) => chunks.push(chunk));
  return (buf, done) => {
    pending.push(buf);
    if (!(buf.length >= 4 && buf.readUInt32BE(buf.length - 4) === 0x0000ffff)) return;
    inflate.write(pending.length === 1 ? pending[0] : Buffer.concat(pending));
    pending = [];
    inflate.flush(zlib.constants.Z_SYNC_FLUSH, () => {
      const bytes = Buffer.concat(chunks);
      chunks = [];
      done(bytes);
    });
  };
}

function syncDecoder(decompress) {
  return (buf, done) => done(decompress(buf));
}

// -- Clients.
let ready = 0;
let frames = 0;
let wireBytes = 0;
let published = null;
let cpuStart = null;
let firstUs = null;
let lastUs = null;
const clients = [];

function newClient(index) {
  const client = {
    index, lastS: 0, seen: new Uint8Array(1024), distinct: 0, maxN: -1, received: 0,
    duplicated: 0, outOfOrder: 0, seqGaps: 0, closed: false, ready: false, timer: null,
  };
  const decompress =
    compress === 'zstd' ? syncDecoder(zstdDecoder()) : compress === 'zlib' ? zlibDecoder() : syncDecoder((b) => b);
  const decode = etf ? etfDecode : (bytes) => JSON.parse(bytes.toString('utf8'));
  const encode = etf ? etfEncode : JSON.stringify;
  const ws = new WebSocket(url, { perMessageDeflate: false });
  client.ws = ws;
  const send = (payload) => { if (ws.readyState === WebSocket.OPEN) ws.send(encode(payload)); };

  ws.on('message', (data) => {
    wireBytes += data.length;
    if (client.ready && discard) return counted(client);
    decompress(data, (bytes) => handle(decode(bytes)));
  });
  const handle = (payload) => {
    if (payload.op === 0) dispatch(client, payload);
    else if (payload.op === 10) {
      client.timer = setInterval(() => send({ op: 1, d: client.lastS }), payload.d.heartbeat_interval);
      send({ op: 2, d: { token, intents: 513, properties: { os: 'linux', browser: 'switchboard.sim', device: 'switchboard.sim' } } });
    } else if (payload.op === 1) send({ op: 1, d: client.lastS });
  };
  ws.on('close', () => { client.closed = true; if (client.timer) clearInterval(client.timer); });
  ws.on('error', () => {});
  return client;
}

function counted(client) {
  const now = nowMicros();
  if (firstUs === null) firstUs = now;
  lastUs = now;
  client.received++;
  frames++;
}

function dispatch(client, payload) {
  const s = payload.s;
  if (s > client.lastS + 1) client.seqGaps += s - client.lastS - 1;
  if (s > client.lastS) client.lastS = s;
  if (payload.t === 'GUILD_CREATE') {
    if (!client.ready) { client.ready = true; if (++ready === count) out(`READY ${count}`); }
  } else if (payload.t === 'MESSAGE_CREATE') {
    const now = nowMicros();
    const nonce = payload.d.nonce;
    const colon = nonce.indexOf(':');
    const n = Number(nonce.slice(0, colon));
    histogram[bucket(now - Number(nonce.slice(colon + 1)))]++;
    counted(client);
    if (n >= client.seen.length) {
      const grown = new Uint8Array(Math.max(client.seen.length * 2, n + 1));
      grown.set(client.seen);
      client.seen = grown;
    }
    if (client.seen[n]) client.duplicated++;
    else {
      client.seen[n] = 1;
      client.distinct++;
      if (n < client.maxN) client.outOfOrder++;
      else client.maxN = n;
    }
  }
}

function finish() {
  const cpu = process.cpuUsage(cpuStart);
  const sum = (f) => clients.reduce((acc, c) => acc + f(c), 0);
  const buckets = {};
  histogram.forEach((c, i) => { if (c > 0) buckets[i] = c; });
  out(JSON.stringify({
    clients: count,
    ready,
    frames,
    wire_bytes: wireBytes,
    lost: discard ? sum((c) => Math.max(published - c.received, 0)) : sum((c) => Math.max(published - c.distinct, 0)),
    duplicated: sum((c) => c.duplicated),
    out_of_order: sum((c) => c.outOfOrder),
    seq_gaps: sum((c) => c.seqGaps),
    closed: sum((c) => (c.closed ? 1 : 0)),
    complete: sum((c) => ((discard ? c.received : c.distinct) >= published ? 1 : 0)),
    cpu_us: cpu.user + cpu.system,
    first_us: firstUs,
    last_us: lastUs,
    histogram: buckets,
  }));
  process.exit(0);
}

function awaitEnd() {
  let last = -1;
  let still = 0;
  const check = () => {
    const done = clients.every((c) => (discard ? c.received : c.distinct) >= published || c.closed);
    still = frames === last ? still + 1 : 0;
    last = frames;
    if (done || still >= 250) finish(); else setTimeout(check, 20);
  };
  check();
}

// Connect in waves so the listen backlog is never the bottleneck.
let started = 0;
const wave = () => {
  for (let k = 0; k < 100 && started < count; k++) clients.push(newClient(started++));
  if (started < count) setTimeout(wave, 10);
};
wave();

let reported = 0;
setInterval(() => {
  if (frames !== reported) { reported = frames; out(`P ${frames}`); }
}, 20);

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const [cmd, arg] = line.split(' ');
  if (cmd === 'START') cpuStart = process.cpuUsage();
  else if (cmd === 'END') { published = Number(arg); awaitEnd(); }
});
rl.on('close', () => process.exit(0));
