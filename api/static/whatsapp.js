// The read-only WhatsApp view of one device: chats (search, "more" pages), the open chat's
// messages (older pages on scroll up) with ticks, and live updates from the device's event stream.
"use strict";

const root = document.getElementById("wa-page");
const device = root.dataset.device;
const bar = document.getElementById("status-bar");
const chatList = document.getElementById("chats");
const chatPane = document.querySelector(".wa-chats");
const noChats = document.getElementById("no-chats");
const moreChats = document.getElementById("more-chats");
const search = document.querySelector("#chat-search input[name=q]");
const thread = document.getElementById("thread");
const messages = document.getElementById("messages");
const older = document.getElementById("older");
const threadName = document.getElementById("thread-name");
const threadNumber = document.getElementById("thread-number");

const PAGE = 30;
const TICKS = { sent: "✓", delivered: "✓✓", read: "✓✓" };
let query = "";
let chatCursor = null;
let chatRequest = 0;
let loadingChats = false;
let openJid = null;
let before = null;
let loadingOlder = false;

/** GETs `path` and resolves to the envelope's `results`. */
async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (response.status === 401) {
    window.location.assign("/login");
    throw new Error("logged out");
  }
  const data = await response.json().catch(() => ({ message: response.statusText }));
  if (!response.ok) throw new Error(data.message || `request failed (${response.status})`);
  return data.results;
}

/** `+60123…` for a phone JID, its user part otherwise. */
function number(jid) {
  const user = jid.split("@")[0];
  return /^\d+$/.test(user) ? `+${user}` : user;
}

/** The time of day for today, the date otherwise. */
function timeOrDate(iso) {
  const at = new Date(iso);
  const today = new Date().toDateString() === at.toDateString();
  return today ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : at.toLocaleDateString();
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

function chatItem(jid) {
  return chatList.querySelector(`li.chat[data-jid="${CSS.escape(jid)}"]`);
}

/** Shows `chat` in the list: updates its row or adds one, at the end of the list (a page being
 * listed) or, when `live`, where its last message puts it (newest first). */
function showChat(chat, live) {
  let item = chatItem(chat.jid);
  if (!item) {
    item = document.createElement("li");
    item.className = "chat";
    item.dataset.jid = chat.jid;
    item.tabIndex = 0;
    item.addEventListener("click", () => openChat(chat.jid));
    item.addEventListener("keydown", (event) => event.key === "Enter" && openChat(chat.jid));
    if (!live) chatList.append(item);
  }
  const at = Date.parse(chat.last_message_at);
  item.dataset.at = String(at);
  if (live) {
    const older = [...chatList.children].find((li) => li !== item && Number(li.dataset.at) < at);
    chatList.insertBefore(item, older || null);
  }
  const unread = span("chat-unread", String(chat.unread_count));
  unread.hidden = chat.unread_count === 0;
  unread.title = `${chat.unread_count} unread`;
  item.replaceChildren(
    span("chat-name", chat.name || number(chat.jid)),
    span("chat-time", timeOrDate(chat.last_message_at)),
    span("chat-preview", chat.last_message_preview || ""),
    unread,
  );
  item.classList.toggle("selected", chat.jid === openJid);
  noChats.hidden = true;
}

async function loadChats(reset) {
  if (!reset && (loadingChats || !chatCursor)) return;
  const request = ++chatRequest;
  loadingChats = true;
  const params = new URLSearchParams({ limit: PAGE });
  if (query) params.set("q", query);
  if (!reset && chatCursor) params.set("cursor", chatCursor);
  try {
    const page = await api(`/api/devices/${device}/chats?${params}`);
    if (request !== chatRequest) return; // a newer search replaced this one
    if (reset) chatList.replaceChildren();
    page.chats.forEach((chat) => showChat(chat, false));
    chatCursor = page.next_cursor;
    moreChats.hidden = !chatCursor;
    noChats.hidden = chatList.children.length > 0;
  } catch (err) {
    showError(err);
  } finally {
    if (request === chatRequest) loadingChats = false;
  }
}

function messageItem(message) {
  const item = document.createElement("li");
  item.className = `message ${message.from_me ? "out" : "in"}`;
  item.dataset.id = message.id;
  item.dataset.sentAt = String(Date.parse(message.sent_at));
  const file = mediaOf(message);
  const text = message.body || (file ? "" : `[${message.kind}]`);
  const meta = span("meta", timeOrDate(message.sent_at));
  meta.title = new Date(message.sent_at).toLocaleString();
  if (message.from_me) {
    const status = message.status || "sent";
    const tick = span(`tick ${status}`, TICKS[status] || TICKS.sent);
    tick.dataset.status = status;
    tick.title = status;
    tick.setAttribute("aria-label", status);
    meta.append(" ", tick);
  }
  item.append(span("sender", message.from_me ? "You" : threadName.textContent));
  if (file) item.append(file);
  if (text) item.append(span("body", text));
  item.append(meta);
  return item;
}

const KIND_NAMES = { image: "Photo", video: "Video", audio: "Voice note", document: "Document", sticker: "Sticker" };

/** The file a message carries, as the page shows it: the picture, a player, or a link to save it;
 * while it is being fetched, or when it was not kept, a line that says so. `null` without one. */
function mediaOf(message) {
  if (!message.media_state) return null;
  const name = KIND_NAMES[message.kind] || "File";
  const box = document.createElement("div");
  box.className = `media ${message.kind}`;
  if (message.media_state !== "stored") {
    const why = {
      pending: "being fetched from WhatsApp…",
      failed: "not kept: WhatsApp no longer had it, or it was too large",
      expired: "removed by your retention setting",
    }[message.media_state] || message.media_state;
    box.append(span("media-note", `${name} ${why}`));
    if (message.media_state === "pending") awaitFile(message, box);
    return box;
  }
  const url = `/api/devices/${device}/media/${encodeURIComponent(message.id)}`;
  if (message.kind === "image" || message.kind === "sticker") {
    const link = document.createElement("a");
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener";
    const img = document.createElement("img");
    // The thumbnail in the bubble; the picture itself opens from the link.
    img.src = message.kind === "image" ? `${url}?thumbnail=true` : url;
    img.alt = message.body || name;
    img.loading = "lazy";
    link.append(img);
    box.append(link);
  } else if (message.kind === "video" || message.kind === "audio") {
    const player = document.createElement(message.kind);
    player.controls = true;
    player.preload = "metadata";
    player.src = url;
    box.append(player);
  }
  const save = document.createElement("a");
  save.className = "media-save";
  save.href = `${url}?download=true`;
  save.textContent = `${message.media_file_name || name} · ${sizeText(message.media_size)} · Download`;
  box.append(save);
  return box;
}

/** Checks every few seconds whether the worker has fetched the file of `message`, whose `box`
 * says it is being fetched, and shows the file (or why there is none) once it is settled. */
async function awaitFile(message, box) {
  const url = `/api/devices/${device}/media/${encodeURIComponent(message.id)}`;
  for (let attempt = 0; attempt < 100; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 3000));
    if (!box.isConnected) return;
    let status;
    try {
      status = (await fetch(url, { method: "HEAD", credentials: "same-origin" })).status;
    } catch {
      continue;
    }
    if (status === 409) continue;
    const settled = status === 200 ? "stored" : "failed";
    box.replaceWith(mediaOf({ ...message, media_state: settled }));
    return;
  }
}

function sizeText(bytes) {
  if (bytes == null) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function shown(id) {
  return messages.querySelector(`li.message[data-id="${CSS.escape(id)}"]`) !== null;
}

/** Puts `message` in time order among those shown (live ones can arrive out of order). */
function placeMessage(message) {
  if (shown(message.id)) return;
  const item = messageItem(message);
  const at = Number(item.dataset.sentAt);
  const later = [...messages.children].find((li) => Number(li.dataset.sentAt) > at);
  messages.insertBefore(item, later || null);
}

async function openChat(jid) {
  openJid = jid;
  before = null;
  chatList.querySelectorAll("li.chat").forEach((li) => li.classList.toggle("selected", li.dataset.jid === jid));
  messages.replaceChildren();
  older.hidden = true;
  try {
    const page = await api(`/api/devices/${device}/messages/${encodeURIComponent(jid)}?limit=${PAGE}`);
    if (openJid !== jid) return;
    threadName.textContent = page.chat.name || number(jid);
    threadName.classList.remove("hint");
    threadNumber.textContent = number(jid);
    page.messages.forEach(placeMessage);
    before = page.next_before;
    older.hidden = !before;
    thread.scrollTop = thread.scrollHeight;
  } catch (err) {
    showError(err);
  }
}

async function loadOlder() {
  if (!before || loadingOlder) return;
  loadingOlder = true;
  const jid = openJid;
  const params = new URLSearchParams({ limit: PAGE, before });
  try {
    const page = await api(`/api/devices/${device}/messages/${encodeURIComponent(jid)}?${params}`);
    if (openJid !== jid) return;
    const height = thread.scrollHeight;
    const fresh = page.messages.filter((m) => !shown(m.id)).reverse().map(messageItem);
    messages.prepend(...fresh);
    thread.scrollTop += thread.scrollHeight - height; // keep what was on screen in place
    before = page.next_before;
    older.hidden = !before;
  } catch (err) {
    showError(err);
  } finally {
    loadingOlder = false;
  }
}

function setStatus({ status, online }) {
  bar.dataset.status = status;
  bar.className = `status-bar ${online ? "online" : "offline"}`;
  bar.textContent = online
    ? "Online: new messages appear as they arrive."
    : `Offline (${status.replaceAll("_", " ")}): showing the stored history.`;
}

function arrived({ message, chat }) {
  // While searching, only chats already listed are updated: the server decides what matches.
  if (!query || chatItem(chat.jid)) showChat(chat, true);
  if (chat.jid !== openJid) return;
  const atBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 60;
  placeMessage(message);
  if (atBottom || message.from_me) thread.scrollTop = thread.scrollHeight;
}

let searchTimer;
search.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    query = search.value.trim();
    loadChats(true);
  }, 250);
});
document.getElementById("chat-search").addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(searchTimer);
  query = search.value.trim();
  loadChats(true);
});
moreChats.addEventListener("click", () => loadChats(false));
chatPane.addEventListener("scroll", () => {
  if (chatPane.scrollHeight - chatPane.scrollTop - chatPane.clientHeight < 80) loadChats(false);
});
older.addEventListener("click", loadOlder);
thread.addEventListener("scroll", () => {
  if (thread.scrollTop < 60) loadOlder();
});

const live = new EventSource(`/api/devices/${device}/events?since=${root.dataset.since}`);
live.addEventListener("status", (event) => setStatus(JSON.parse(event.data)));
live.addEventListener("message", (event) => arrived(JSON.parse(event.data)));

loadChats(true);
