// An unmodified discord.js (v14) bot against Switchboard.Gateway: the proof
// that a client library written for Discord, not by us, connects,
// identifies, sees its guilds, sends a message over REST and receives it as
// MESSAGE_CREATE, fetches members (op 8), and resumes after a RECONNECT.
//
//   node discordjs_bot.js http://127.0.0.1:PORT/api TOKEN
//
// One JSON object per line on stdout; the ExUnit test reads them and drives
// the next step by writing a line to stdin ("reconnected", "quit").
'use strict';
const readline = require('node:readline');
const { Client, GatewayIntentBits, Events } = require('discord.js');

const [api, token] = process.argv.slice(2);
const out = (event) => process.stdout.write(JSON.stringify(event) + '\n');

const client = new Client({
  intents: [
    GatewayIntentBits.Guilds,
    GatewayIntentBits.GuildMessages,
    GatewayIntentBits.MessageContent,
    GatewayIntentBits.GuildMembers,
  ],
  rest: { api },
});

let channel = null;

client.on(Events.ClientReady, async (c) => {
  const guild = c.guilds.cache.first();
  channel = guild.channels.cache.find((ch) => ch.isTextBased());
  out({
    event: 'ready',
    user: c.user.tag,
    guilds: c.guilds.cache.size,
    guild: guild.name,
    channels: guild.channels.cache.size,
    channel: channel.name,
  });
  const members = await guild.members.fetch();
  out({ event: 'members', count: members.size });
  const sent = await channel.send('hello from discord.js');
  out({ event: 'sent', id: sent.id, content: sent.content });
});

client.on(Events.MessageCreate, (message) => {
  out({ event: 'message', id: message.id, content: message.content, author: message.author.tag });
});

client.on(Events.ShardResume, (shard, replayed) => out({ event: 'resumed', shard, replayed }));
client.on(Events.ShardReconnecting, (shard) => out({ event: 'reconnecting', shard }));
client.on(Events.Error, (error) => out({ event: 'error', message: String(error) }));

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  if (line === 'send') {
    const sent = await channel.send('after resume');
    out({ event: 'sent', id: sent.id, content: sent.content });
  } else if (line === 'quit') {
    await client.destroy();
    process.exit(0);
  }
});
process.stdin.on('end', () => process.exit(0));

client.login(token).catch((error) => {
  out({ event: 'error', message: String(error) });
  process.exit(1);
});
