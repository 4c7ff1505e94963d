// Drives Baileys sessions against the simulator's WhatsApp Web front end, one or many in this
// one Node process (as WAHA and Evolution API hold theirs): events go to stdout as JSON lines,
// commands come from stdin as JSON lines. Every event and command names its session, a number
// the caller chooses when it opens it.
//
//   node [--expose-gc] driver.mjs <baileys dir> <front end URL> <root key hex>
//
// Events:   {"session":n,"event":"qr","code":…}  {"session":n,"event":"open","jid":…}
//           {"session":n,"event":"close","code":…}  {"session":n,"event":"sent","id":…}
//           {"session":n,"event":"message","id":…,"from":…,"text":…}
//           {"event":"gc","forced":…,"heapUsed":…}  {"session":n,"event":"error","error":…}
// Commands: {"cmd":"open","session":n,"auth":"<auth dir>"}
//           {"cmd":"send","session":n,"to":"<jid>","text":…}
//           {"cmd":"gc"} (a full collection when Node runs with --expose-gc)  {"cmd":"quit"}
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const [baileysDir, url, rootKeyHex] = process.argv.slice(2);
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
const logger = pino({ level: process.env.BAILEYS_LOG ?? 'silent' }, pino.destination(2));
// The open sessions by number: each with its socket and its credentials' last save.
const sessions = new Map();

// One session on the credentials in `authDir` (a fresh directory pairs by QR code).
async function open(session, authDir) {
  const { state, saveCreds } = await useMultiFileAuthState(authDir);
  const s = { sock: undefined, saving: Promise.resolve() };
  // One write of the credentials at a time: two at once can leave the file truncated.
  s.save = () => (s.saving = s.saving.then(saveCreds));
  sessions.set(session, s);
  const emit = (event) => out({ session, ...event });
  const start = () => {
    const sock = makeWASocket({
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
    s.sock = sock;
    sock.ev.on('creds.update', s.save);
    sock.ev.on('connection.update', (update) => {
      if (update.qr) emit({ event: 'qr', code: update.qr });
      if (update.connection === 'open') emit({ event: 'open', jid: sock.user?.id });
      if (update.connection === 'close') {
        const code = update.lastDisconnect?.error?.output?.statusCode;
        emit({ event: 'close', code, error: String(update.lastDisconnect?.error ?? '') });
        // After pairing the server restarts the stream (515): a new socket logs in.
        if (code === DisconnectReason.restartRequired) start();
      }
    });
    sock.ev.on('messages.upsert', ({ messages }) => {
      for (const m of messages) {
        if (m.key.fromMe) continue;
        const text = m.message?.conversation ?? m.message?.extendedTextMessage?.text;
        if (text === undefined) continue;
        emit({ event: 'message', id: m.key.id, from: m.key.remoteJid, alt: m.key.remoteJidAlt, text });
      }
    });
  };
  start();
}

for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line);
  const session = command.session;
  try {
    if (command.cmd === 'open') {
      await open(session, command.auth);
    } else if (command.cmd === 'send') {
      const sent = await sessions.get(session).sock.sendMessage(command.to, { text: command.text });
      out({ session, event: 'sent', id: sent.key.id });
    } else if (command.cmd === 'gc') {
      const forced = typeof global.gc === 'function';
      if (forced) global.gc();
      out({ event: 'gc', forced, heapUsed: process.memoryUsage().heapUsed });
    } else if (command.cmd === 'quit') {
      break;
    }
  } catch (error) {
    out({ session, event: 'error', error: String(error?.stack ?? error) });
  }
}
// Closed first, then a moment for the key writes in flight, then the last saves: a restart must
// find everything each session stored.
for (const s of sessions.values()) s.sock.end(undefined);
await new Promise((resolve) => setTimeout(resolve, 500));
await Promise.all([...sessions.values()].map((s) => s.save()));
process.exit(0);
