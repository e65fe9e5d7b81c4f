// The client-side floor of `mix switchboard.sim --transport websocket
// --server node`: a Node ws server that speaks just enough of the gateway
// protocol (HELLO, READY and GUILD_CREATE after IDENTIFY) and then pushes
// pre-built frames (one zstd stream, built by the sim with the gateway's own
// codec and compressor, the same bytes for every connection) as fast as the
// clients take them. What the clients cost to receive, decompress and parse
// the frames, with no BEAM beside them.
//
// usage: node floor_server.js FRAMES_FILE CLIENTS DURATION_MS IN_FLIGHT
//   FRAMES_FILE: frames, each a 4-byte big-endian length and its bytes:
//                HELLO, READY, GUILD_CREATE, then the messages in order.
// stdout: "PORT <port>"; "READY <clients>" once every client IDENTIFYed;
//         after stdin "GO", for DURATION_MS every connection gets the next
//         message frame whenever fewer than IN_FLIGHT of its own are
//         unwritten; then every connection is brought to the same count and
//         "SENT <messages per connection> <cpu µs>" is printed.
'use strict';
const fs = require('fs');
const readline = require('readline');
const WebSocket = require('ws');
const { performance } = require('perf_hooks');

const [file, clientsArg, durationArg, inFlightArg] = process.argv.slice(2);
const clients = Number(clientsArg);
const duration = Number(durationArg);
const inFlight = Number(inFlightArg);

const bytes = fs.readFileSync(file);
const frames = [];
for (let at = 0; at < bytes.length;) {
  const length = bytes.readUInt32BE(at);
  frames.push(bytes.subarray(at + 4, at + 4 + length));
  at += 4 + length;
}
const [hello, ready, guildCreate] = frames;
const messages = frames.slice(3);

const connections = [];
let identified = 0;
let target = messages.length; // lowered to the count reached at the deadline
let stopping = false;
let cpuStart = null;

const server = new WebSocket.Server({ host: '127.0.0.1', port: 0, perMessageDeflate: false, backlog: 4096 });
server.on('listening', () => process.stdout.write(`PORT ${server.address().port}\n`));
server.on('connection', (ws) => {
  const conn = { ws, next: 0, unwritten: 0, identified: false };
  connections.push(conn);
  ws.send(hello);
  ws.on('message', () => {
    // The first message is IDENTIFY; later ones (heartbeats) need nothing.
    if (conn.identified) return;
    conn.identified = true;
    ws.send(ready);
    ws.send(guildCreate);
    if (++identified === clients) process.stdout.write(`READY ${clients}\n`);
  });
  ws.on('error', () => {});
});

// Write callbacks can follow each other without the event loop reaching
// its timers, so the deadline is read here as well as set as a timer.
let deadline = Infinity;

function pump(conn) {
  if (!stopping && performance.now() >= deadline) stop();
  while (conn.unwritten < inFlight && conn.next < target) {
    conn.unwritten++;
    conn.ws.send(messages[conn.next++], () => {
      conn.unwritten--;
      pump(conn);
      if (stopping) checkDone();
    });
  }
}

function checkDone() {
  if (connections.every((c) => c.next >= target && c.unwritten === 0)) {
    const cpu = process.cpuUsage(cpuStart);
    process.stdout.write(`SENT ${target} ${cpu.user + cpu.system}\n`);
    stopping = false;
    deadline = Infinity;
  }
}

function stop() {
  target = Math.max(...connections.map((c) => c.next));
  stopping = true;
  connections.forEach(pump);
  checkDone();
}

function go() {
  cpuStart = process.cpuUsage();
  deadline = performance.now() + duration;
  connections.forEach(pump);
  setTimeout(() => { if (!stopping) stop(); }, duration);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => { if (line === 'GO') go(); });
rl.on('close', () => process.exit(0));
