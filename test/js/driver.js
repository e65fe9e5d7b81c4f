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
//           {"cmd":"list","id":..} (the client's member list, see below)
//           {"cmd":"exit"}
// Events:   {"event":"open"|"payload"|"close"|"error"|"list", "id":.., ...}
//
// Each client keeps the lazy member list a Discord client draws: slots set by
// the ops of every GUILD_MEMBER_LIST_UPDATE (SYNC, INSERT, UPDATE, DELETE,
// INVALIDATE), an unknown slot null. "list" reports its slots as
// "g:<group id>:<count>" / "m:<user id>:<status>" / null, with the last
// member_count, online_count and groups.
'use strict';
const WebSocket = require('ws');
const zlib = require('zlib');
const fzstd = require('fzstd');
const readline = require('readline');

const clients = new Map();

function itemKey(item) {
  if (item.group) return `g:${item.group.id}:${item.group.count}`;
  return `m:${item.member.user.id}:${item.member.presence.status}`;
}

function applyListUpdate(client, d) {
  const slots = client.list.slots;
  for (const op of d.ops) {
    switch (op.op) {
      case 'SYNC': {
        const [first, last] = op.range;
        for (let i = first; i <= last; i++) slots[i] = i - first < op.items.length ? itemKey(op.items[i - first]) : null;
        break;
      }
      case 'INSERT': slots.splice(op.index, 0, itemKey(op.item)); break;
      case 'UPDATE': slots[op.index] = itemKey(op.item); break;
      case 'DELETE': slots.splice(op.index, 1); break;
      case 'INVALIDATE': for (let i = op.range[0]; i <= op.range[1]; i++) slots[i] = null; break;
      default: throw new Error('unknown op ' + op.op);
    }
  }
  client.list.counts = { member_count: d.member_count, online_count: d.online_count, groups: d.groups };
}

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
  const client = { ws, seq: null, timer: null, queue: Promise.resolve(), list: { slots: [], counts: null } };
  clients.set(id, client);
  ws.on('open', () => emit({ event: 'open', id }));
  const onText = (text) => {
    const payload = JSON.parse(text);
    if (payload.s != null) client.seq = payload.s;
    if (payload.t === 'GUILD_MEMBER_LIST_UPDATE') applyListUpdate(client, payload.d);
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
    case 'list': emit({ event: 'list', id: msg.id, slots: Array.from(client.list.slots, (s) => s ?? null), ...client.list.counts }); break;
    case 'exit': process.exit(0);
  }
});
rl.on('close', () => process.exit(0));
