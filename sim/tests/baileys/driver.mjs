// Drives one Baileys session against the simulator's WhatsApp Web front end for the `baileys`
// test: events go to stdout as JSON lines, commands come from stdin as JSON lines.
//
//   node driver.mjs <baileys dir> <front end URL> <auth dir> <root key hex>
//
// Events:   {"event":"qr","code":…}  {"event":"open","jid":…}  {"event":"close","code":…}
//           {"event":"message","id":…,"from":…,"text":…}  {"event":"sent","id":…}
//           {"event":"error","error":…}
// Commands: {"cmd":"send","to":"<jid>","text":…}  {"cmd":"quit"}
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const [baileysDir, url, authDir, rootKeyHex] = process.argv.slice(2);
const lib = (file) => import(pathToFileURL(path.join(baileysDir, 'node_modules', 'baileys', 'lib', file)).href);
const baileys = await lib('index.js');
const { WA_CERT_DETAILS } = await lib('Defaults/index.js');
const makeWASocket = baileys.default ?? baileys.makeWASocket;
const { useMultiFileAuthState, DisconnectReason, Browsers } = baileys;
const pino = (await import(pathToFileURL(path.join(baileysDir, 'node_modules', 'pino', 'pino.js')).href)).default;

// The front end's certificate chain is signed by its own root, not WhatsApp's: trust it, as the
// Rust client's test builds skip the check. Nothing else of Baileys is changed.
WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(rootKeyHex, 'hex');

const out = (event) => process.stdout.write(JSON.stringify(event) + '\n');
const { state, saveCreds } = await useMultiFileAuthState(authDir);
// One write of the credentials at a time: two at once can leave the file truncated.
let saving = Promise.resolve();
const save = () => (saving = saving.then(saveCreds));
const logger = pino({ level: process.env.BAILEYS_LOG ?? 'silent' }, pino.destination(2));
let sock;

function start() {
  sock = makeWASocket({
    auth: state,
    waWebSocketUrl: url,
    logger,
    // Nothing may be fetched from web.whatsapp.com.
    version: [2, 3000, 1],
    browser: Browsers.ubuntu('Chrome'),
    syncFullHistory: false,
    markOnlineOnConnect: false,
    connectTimeoutMs: 10_000,
  });
  sock.ev.on('creds.update', save);
  sock.ev.on('connection.update', (update) => {
    if (update.qr) out({ event: 'qr', code: update.qr });
    if (update.connection === 'open') out({ event: 'open', jid: sock.user?.id });
    if (update.connection === 'close') {
      const code = update.lastDisconnect?.error?.output?.statusCode;
      out({ event: 'close', code, error: String(update.lastDisconnect?.error ?? '') });
      // After pairing the server restarts the stream (515): a new socket logs in.
      if (code === DisconnectReason.restartRequired) start();
    }
  });
  sock.ev.on('messages.upsert', ({ messages }) => {
    for (const m of messages) {
      if (m.key.fromMe) continue;
      const text = m.message?.conversation ?? m.message?.extendedTextMessage?.text;
      if (text === undefined) continue;
      out({ event: 'message', id: m.key.id, from: m.key.remoteJid, alt: m.key.remoteJidAlt, text });
    }
  });
}

start();
for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line);
  try {
    if (command.cmd === 'send') {
      const sent = await sock.sendMessage(command.to, { text: command.text });
      out({ event: 'sent', id: sent.key.id });
    } else if (command.cmd === 'quit') {
      break;
    }
  } catch (error) {
    out({ event: 'error', error: String(error?.stack ?? error) });
  }
}
// Closed first, then a moment for the key writes in flight, then the last save: a restart must
// find everything this session stored.
sock.end(undefined);
await new Promise((resolve) => setTimeout(resolve, 500));
await save();
process.exit(0);
