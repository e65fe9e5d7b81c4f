// A scriptable Discord gateway client over npm's `ws`, driven by JSON lines on
// stdin and reporting JSON lines on stdout. Compressed streams are decoded by
// decoders independent of the server: Node's zlib for zlib-stream (inflate
// with a sync flush, messages ending 00 00 ff ff) and npm's fzstd for
// zstd-stream.
//
// Commands: {"cmd":"connect","id":..,"url":..,"heartbeat":bool}
//           {"cmd":"send","id":..,"payload":obj} | {"cmd":"send","id":..,"text":str}
//           {"cmd":"terminate","id":..} (drop TCP, no close frame)
//           {"cmd":"close","id":..,"code":n}
//           {"cmd":"exit"}
// Events:   {"event":"open"|"payload"|"close"|"error", "id":.., ...}
'use strict';
const WebSocket = require('ws');
const zlib = require('zlib');
const fzstd = require('fzstd');
const readline = require('readline');

const clients = new Map();
// The test may close our stdout first; that ends the driver quietly.
process.stdout.on('error', () => process.exit(0));
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

function zlibDecoder() {
  const inflate = zlib.createInflate();
  let chunks = [];
  let pending = Buffer.alloc(0);
  let queue = Promise.resolve();
  inflate.on('data', (d) => chunks.push(d));
  return (buf, done) => {
    // Discord's rule: a message is complete when the data ends with 00 00 ff ff.
    pending = Buffer.concat([pending, buf]);
    if (!(pending.length >= 4 && pending.readUInt32BE(pending.length - 4) === 0x0000ffff)) return;
    const message = pending;
    pending = Buffer.alloc(0);
    // One message at a time, so output is never attributed to the wrong one.
    queue = queue.then(() => new Promise((resolve) => {
      inflate.write(message);
      inflate.flush(zlib.constants.Z_SYNC_FLUSH, () => {
        const out = Buffer.concat(chunks).toString('utf8');
        chunks = [];
        done(out);
        resolve();
      });
    }));
  };
}

function zstdDecoder() {
  let out = [];
  const stream = new fzstd.Decompress((chunk) => out.push(Buffer.from(chunk)));
  return (buf, done) => {
    stream.push(new Uint8Array(buf));
    const text = Buffer.concat(out).toString('utf8');
    out = [];
    done(text);
  };
}

function connect({ id, url, heartbeat }) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const compress = /compress=zlib-stream/.test(url) ? 'zlib' : /compress=zstd-stream/.test(url) ? 'zstd' : null;
  const decode = compress === 'zlib' ? zlibDecoder() : compress === 'zstd' ? zstdDecoder() : null;
  const client = { ws, seq: null, timer: null, queue: Promise.resolve() };
  clients.set(id, client);
  ws.on('open', () => emit({ event: 'open', id }));
  const onText = (text) => {
    const payload = JSON.parse(text);
    if (payload.s != null) client.seq = payload.s;
    if (payload.op === 10 && heartbeat) {
      client.timer = setInterval(() => ws.send(JSON.stringify({ op: 1, d: client.seq })), payload.d.heartbeat_interval);
    }
    // A server-requested heartbeat is answered at once.
    if (payload.op === 1 && heartbeat) ws.send(JSON.stringify({ op: 1, d: client.seq }));
    emit({ event: 'payload', id, payload, wire: client.lastWire });
  };
  ws.on('message', (data, isBinary) => {
    client.lastWire = data.length;
    if (decode) {
      // Messages are decoded strictly in arrival order.
      decode(Buffer.from(data), (text) => onText(text));
    } else {
      onText(data.toString('utf8'));
    }
  });
  ws.on('close', (code, reason) => {
    if (client.timer) clearInterval(client.timer);
    emit({ event: 'close', id, code, reason: reason.toString() });
  });
  ws.on('error', (err) => emit({ event: 'error', id, message: String(err.message) }));
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const msg = JSON.parse(line);
  const client = clients.get(msg.id);
  switch (msg.cmd) {
    case 'connect': connect(msg); break;
    case 'send': client.ws.send(msg.payload !== undefined ? JSON.stringify(msg.payload) : msg.text); break;
    case 'terminate': if (client.timer) clearInterval(client.timer); client.ws.terminate(); break;
    case 'close': client.ws.close(msg.code); break;
    case 'exit': process.exit(0);
  }
});
rl.on('close', () => process.exit(0));
