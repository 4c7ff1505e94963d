// The dashboard: device cards and API tokens, over the JSON API with the page's CSRF token.
"use strict";

/** Calls the API (common.js); resolves to the envelope's `results`. */
const api = async (method, path, body) => (await callApi(method, path, body)).results;

/** How long ago `value` was, in words ("just now", "5 min ago", "3 h ago"), or "never". */
function ago(value) {
  if (!value) return "never";
  const secs = Math.max(0, (Date.now() - new Date(value).getTime()) / 1000);
  if (secs < 45) return "just now";
  if (secs < 3600) return `${Math.round(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.round(secs / 3600)} h ago`;
  return new Date(value).toLocaleDateString();
}

const statusText = {
  offline: "Offline", pairing: "Pairing", connecting: "Connecting", online: "Online",
  logged_out: "Logged out", banned: "Banned",
};

// ---- Devices ----------------------------------------------------------------------------------

const deviceGrid = document.getElementById("devices");
const cardTemplate = document.getElementById("device-card");

/** Shows `el` when `show` is true. */
function toggle(el, show) {
  if (el) el.hidden = !show;
}

/** Creates the card of a device and wires its buttons; `updateCard` fills it. */
function createCard(device) {
  const card = cardTemplate.content.firstElementChild.cloneNode(true);
  card.dataset.id = device.id;
  const id = device.id;
  const $ = (sel) => card.querySelector(sel);

  $(".leads-link").href = `/device/${id}/leads`;
  $(".whatsapp-link").href = `/device/${id}/whatsapp-web`;
  $(".actions-link").href = `/device/${id}/actions`;
  const rename = $(".rename");
  $(".edit").addEventListener("click", () => {
    rename.hidden = false;
    rename.elements.name.value = card.device.name;
    rename.elements.phone.value = card.device.phone || "";
    rename.elements.name.focus();
  });
  rename.querySelector(".cancel").addEventListener("click", () => { rename.hidden = true; });
  rename.addEventListener("submit", async (event) => {
    event.preventDefault();
    const changes = { name: rename.elements.name.value };
    const phone = rename.elements.phone.value.trim();
    if (phone !== (card.device.phone || "")) changes.phone = phone || null;
    const updated = await busy(rename.querySelector("button[type=submit]"), () => api("PUT", `/api/devices/${id}`, changes));
    if (updated) {
      rename.hidden = true;
      updateCard(card, { ...card.view, ...updated });
    }
  });
  $(".delete").addEventListener("click", async () => {
    if (!window.confirm(`Delete ${card.device.name}? Its stored chats and leads go with it.`)) return;
    if ((await act(() => api("DELETE", `/api/devices/${id}`))) !== undefined) {
      card.remove();
      updateEmpty();
    }
  });

  $(".pair-qr").addEventListener("click", async () => {
    toggle($(".pairing"), true);
    $(".waiting").hidden = false;
    const qr = await act(() => api("POST", `/api/devices/${id}/qr`));
    if (qr) showQr(card, qr.qr_svg);
  });
  const codeForm = $(".code-form");
  $(".pair-code-open").addEventListener("click", () => {
    codeForm.hidden = false;
    codeForm.elements.phone.value = card.device.phone || "";
    codeForm.elements.phone.focus();
  });
  codeForm.querySelector(".cancel").addEventListener("click", () => { codeForm.hidden = true; });
  codeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    toggle($(".pairing"), true);
    const body = codeForm.elements.phone.value.trim() ? { phone: codeForm.elements.phone.value } : {};
    const result = await act(() => api("POST", `/api/devices/${id}/pair-code`, body));
    if (result) {
      codeForm.hidden = true;
      showPairCode(card, result.pair_code);
    }
  });
  $(".reconnect").addEventListener("click", () => act(() => api("POST", `/api/devices/${id}/reconnect`)));
  $(".logout").addEventListener("click", async () => {
    if (!window.confirm(`Log ${card.device.name} out of WhatsApp? You can link it again later.`)) return;
    await act(() => api("POST", `/api/devices/${id}/logout`));
  });

  const check = $(".check");
  $(".show-check").addEventListener("click", () => {
    check.hidden = !check.hidden;
    if (!check.hidden) check.elements.phones.focus();
  });
  check.addEventListener("submit", async (event) => {
    event.preventDefault();
    const phones = check.elements.phones.value.split(/[\s,;]+/).filter(Boolean);
    const results = await act(() => api("POST", `/api/devices/${id}/check`, { phones }));
    if (!results) return;
    const list = $(".check-results");
    list.replaceChildren(...results.map((r) => {
      const item = document.createElement("li");
      item.className = r.jid ? "on-wa" : "not-on-wa";
      item.textContent = `${r.phone}: ${r.jid ? "on WhatsApp" : "not on WhatsApp"}`;
      return item;
    }));
    list.hidden = false;
  });

  $(".show-chats").addEventListener("click", async () => {
    const list = $(".chat-list");
    if (!list.hidden) { list.hidden = true; return; }
    await loadChats(card);
    list.hidden = false;
  });

  const confirm = $(".demo-confirm");
  if (confirm) {
    confirm.addEventListener("click", () => busy(confirm, () => api("POST", `/api/demo/devices/${id}/confirm-code`)));
  }
  const demo = $(".demo-scan");
  if (demo) {
    demo.addEventListener("submit", async (event) => {
      event.preventDefault();
      const phone = demo.elements.phone.value.trim() || card.device.phone || "";
      await act(() => api("POST", `/api/demo/devices/${id}/scan`, { phone }));
    });
  }
  updateCard(card, device);
  return card;
}

async function loadChats(card) {
  const page = await act(() => api("GET", `/api/devices/${card.dataset.id}/chats`));
  if (!page) return;
  const chats = page.chats;
  const list = card.querySelector(".chat-list");
  if (chats.length === 0) {
    const empty = document.createElement("li");
    empty.className = "hint";
    empty.textContent = "No chats yet.";
    list.replaceChildren(empty);
    return;
  }
  list.replaceChildren(...chats.map((chat) => {
    const item = document.createElement("li");
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = chat.name || chat.jid.split("@")[0];
    item.append(who, ` ${chat.last_message_preview || ""}`);
    if (chat.unread_count > 0) item.append(` (${chat.unread_count} unread)`);
    return item;
  }));
}

function showQr(card, svg) {
  const box = card.querySelector(".qr");
  if (svg && box.dataset.svg !== svg) {
    box.dataset.svg = svg;
    box.innerHTML = svg; // rendered on our server from the QR payload; contains no user input
  }
  toggle(box, Boolean(svg));
  card.querySelector(".waiting").hidden = Boolean(svg) || !card.querySelector(".pair-code").hidden;
}

function showPairCode(card, code) {
  const line = card.querySelector(".pair-code");
  line.querySelector("b").textContent = code || "";
  line.hidden = !code;
  const confirm = card.querySelector(".demo-confirm");
  if (confirm) confirm.hidden = !code;
  // The demo's QR scan form is for a QR code: a pair code is entered on the phone instead.
  const scan = card.querySelector(".demo-scan");
  if (scan) scan.hidden = Boolean(code);
  if (code) card.querySelector(".waiting").hidden = true;
}

/** Fills a card from a device (and, from the event stream, its pairing progress). */
function updateCard(card, view) {
  const $ = (sel) => card.querySelector(sel);
  card.view = view;
  card.device = view;
  $(".name").textContent = view.name;
  const status = $(".status");
  status.textContent = statusText[view.status] || view.status;
  status.className = `status ${view.status}`;
  $(".phone").textContent = view.phone || "No number yet";
  $(".jid").textContent = view.jid ? `Linked as ${view.jid.split("@")[0]}` : "Not linked";
  const seen = $(".seen");
  seen.dataset.at = view.last_seen_at || "";
  seen.textContent = `Last active: ${ago(view.last_seen_at)}`;
  seen.title = when(view.last_seen_at);
  card.classList.toggle("online", view.status === "online");
  const pairing = view.pairing || {};
  const error = $(".last-error");
  error.textContent = pairing.last_error || "";
  error.hidden = !pairing.last_error || view.status === "online";
  showRestriction($(".restriction"), view.restrictions);
  const isPairing = view.status === "pairing";
  toggle($(".pairing"), isPairing);
  if (isPairing) {
    showQr(card, pairing.qr_svg);
    showPairCode(card, pairing.pair_code);
  }
  const linked = Boolean(view.jid);
  const online = view.status === "online";
  toggle($(".pair-qr"), !online && !isPairing);
  toggle($(".pair-code-open"), !online && !isPairing);
  toggle($(".reconnect"), linked && !online && !isPairing && view.status !== "banned");
  toggle($(".logout"), linked && view.status !== "logged_out" && view.status !== "banned");
  toggle($(".show-check"), online);
  if (!online) toggle($(".check"), false);
  if (typeof view.chat_count === "number") {
    const count = $(".chat-count");
    if (count.textContent !== String(view.chat_count) && !$(".chat-list").hidden) loadChats(card);
    count.textContent = view.chat_count;
  }
}

/**
 * Says what WhatsApp lets the number do with new chats (people who never wrote to it): nothing
 * when unrestricted and uncapped; a warning while sends to new contacts wait; the cap's use
 * otherwise.
 */
function showRestriction(el, r) {
  const cap = r && r.new_chat_cap;
  let text = "";
  if (r && r.new_chats_wait_until) {
    const why = r.timelocked_until
      ? "WhatsApp has restricted new chats from this number (a reach-out timelock)"
      : `the monthly cap on messages to new chats is used up (${cap.used} of ${cap.total})`;
    text = `New chats paused until ${when(r.new_chats_wait_until)}: ${why}. ` +
      "Sends to new contacts wait and go out by themselves then; replies in existing chats still go.";
  } else if (cap) {
    text = `Messages to new chats this month: ${cap.used} of ${cap.total}` +
      (cap.resets_at ? ` (resets ${when(cap.resets_at)})` : "");
  }
  el.textContent = text;
  el.classList.toggle("blocked", Boolean(r && r.new_chats_wait_until));
  el.hidden = !text;
}

function updateEmpty() {
  document.getElementById("no-devices").hidden = deviceGrid.children.length > 0;
}

/** Brings the grid in line with `views`: updates cards in place, adds new ones, drops gone ones. */
function showDevices(views) {
  const cards = new Map([...deviceGrid.children].map((card) => [card.dataset.id, card]));
  const ordered = views.map((view) => {
    const card = cards.get(String(view.id));
    if (card) {
      updateCard(card, view);
      cards.delete(String(view.id));
      return card;
    }
    return createCard(view);
  });
  for (const gone of cards.values()) gone.remove();
  ordered.forEach((card, i) => {
    if (deviceGrid.children[i] !== card) deviceGrid.insertBefore(card, deviceGrid.children[i] || null);
  });
  updateEmpty();
}

async function loadDevices() {
  showDevices(await api("GET", "/api/devices"));
}

// Live updates: the server pushes the device list whenever something changes. The page says
// whether they are live; they can be paused, and stop while the tab is hidden.
const liveBox = document.getElementById("devices-live");
const liveState = document.getElementById("devices-live-state");
let source = null;

function setLiveState(text, live) {
  liveState.textContent = text;
  liveState.classList.toggle("is-live", live);
}

function followEvents() {
  if (source || !liveBox.checked || document.hidden) return;
  source = new EventSource("/api/events");
  setLiveState("Connecting…", false);
  source.addEventListener("open", () => setLiveState("Live: changes appear as they happen", true));
  source.addEventListener("error", () => setLiveState("Reconnecting…", false));
  source.addEventListener("devices", (event) => {
    setLiveState("Live: changes appear as they happen", true);
    showDevices(JSON.parse(event.data));
  });
}

function stopEvents(why) {
  if (source) source.close();
  source = null;
  setLiveState(why, false);
}

liveBox.addEventListener("change", () => {
  if (liveBox.checked) {
    loadDevices().catch(showError);
    followEvents();
  } else {
    stopEvents("Paused: press Refresh now to update");
  }
});
document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    stopEvents("Paused while the page is hidden");
  } else if (liveBox.checked) {
    loadDevices().catch(showError);
    followEvents();
  }
});
document.getElementById("devices-refresh").addEventListener("click", (event) =>
  busy(event.currentTarget, loadDevices));

// "Last active" is relative: keep it true as time passes.
setInterval(() => {
  for (const seen of document.querySelectorAll(".device .seen")) {
    seen.textContent = `Last active: ${ago(seen.dataset.at)}`;
  }
}, 30000);

document.getElementById("add-device").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const phone = form.elements.phone.value.trim();
  const device = await act(() => api("POST", "/api/devices", { name: form.elements.name.value, phone: phone || null }));
  if (device) {
    deviceGrid.append(createCard(device));
    updateEmpty();
    form.reset();
  }
});

// ---- API tokens -------------------------------------------------------------------------------

const tokenRows = document.querySelector("#tokens tbody");
const tokenDevices = document.getElementById("token-devices");
/** Device names by id, for the tokens' Devices column. */
let deviceNames = new Map();

function renderToken(token) {
  const row = document.createElement("tr");
  const scopes = (token.scopes || []).join(", ");
  const devices = token.device_ids ? token.device_ids.map((id) => deviceNames.get(id) || `#${id} (deleted)`).join(", ") : "all";
  for (const text of [token.name, `…${token.hint}`, scopes, devices, when(token.created_at), when(token.last_used_at)]) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
  const revoke = document.createElement("button");
  revoke.className = "danger";
  revoke.textContent = "Revoke";
  revoke.addEventListener("click", async () => {
    if (!window.confirm(`Revoke ${token.name}? Programs using it will stop working.`)) return;
    try {
      await api("DELETE", `/api/tokens/${token.id}`);
      row.remove();
      document.getElementById("no-tokens").hidden = tokenRows.children.length > 0;
    } catch (err) { showError(err); }
  });
  const cell = document.createElement("td");
  cell.append(revoke);
  row.append(cell);
  return row;
}

async function loadTokens() {
  const [tokens, devices] = await Promise.all([api("GET", "/api/tokens"), api("GET", "/api/devices")]);
  deviceNames = new Map(devices.map((d) => [d.id, d.name]));
  for (const old of tokenDevices.querySelectorAll("label")) old.remove();
  for (const d of devices) {
    const box = Object.assign(document.createElement("input"), { type: "checkbox", name: "token-device", value: d.id });
    const label = document.createElement("label");
    label.append(box, ` ${d.name}`);
    tokenDevices.insertBefore(label, tokenDevices.querySelector(".hint"));
  }
  tokenRows.replaceChildren(...tokens.map(renderToken));
  document.getElementById("no-tokens").hidden = tokens.length > 0;
}

document.getElementById("add-token").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  try {
    const scopes = [...form.querySelectorAll('input[name="scope"]:checked')].map((box) => box.value);
    const body = { name: form.elements.name.value, scopes };
    const chosen = [...form.querySelectorAll('input[name="token-device"]:checked')].map((box) => Number(box.value));
    if (chosen.length) body.device_ids = chosen;
    const created = await api("POST", "/api/tokens", body);
    document.getElementById("new-token-value").textContent = created.token;
    document.getElementById("new-token").hidden = false;
    tokenRows.prepend(renderToken(created));
    document.getElementById("no-tokens").hidden = true;
    form.reset();
    clearError();
  } catch (err) { showError(err); }
});

// ---- Tabs -------------------------------------------------------------------------------------

// The analytics and webhooks tabs live in analytics.js and webhooks.js, loaded after this file.
const loaders = {
  devices: loadDevices,
  tokens: loadTokens,
  analytics: () => window.analyticsTab.show(),
  webhooks: () => window.webhooksTab.show(),
};

// The main navigation links the tabs as /dashboard#analytics and so on: here they switch in place.
function selectTab(name) {
  if (!loaders[name]) name = "devices";
  for (const tab of document.querySelectorAll("#main-nav [data-tab]")) {
    if (tab.dataset.tab === name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
    document.getElementById(`tab-${tab.dataset.tab}`).hidden = tab.dataset.tab !== name;
  }
  const titles = { devices: "Devices", analytics: "Analytics", tokens: "API tokens", webhooks: "Webhooks" };
  document.title = `${titles[name]} · wafleet`;
  loaders[name]().catch(showError);
}

for (const tab of document.querySelectorAll("#main-nav [data-tab]")) {
  tab.addEventListener("click", (event) => {
    event.preventDefault();
    history.replaceState(null, "", tab.dataset.tab === "devices" ? "/dashboard" : `/dashboard#${tab.dataset.tab}`);
    selectTab(tab.dataset.tab);
  });
}
window.addEventListener("hashchange", () => selectTab(location.hash.slice(1)));
selectTab(location.hash.slice(1) || "devices");
followEvents();
