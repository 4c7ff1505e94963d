// The dashboard: device cards and API tokens, over the JSON API with the page's CSRF token.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const flash = document.getElementById("flash");

/** Calls the JSON API; throws an Error carrying the server's message on failure. */
async function api(method, path, body) {
  const init = { method, headers: { "X-CSRF-Token": csrf, Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    window.location.assign("/login");
    throw new Error("logged out");
  }
  const data = await response.json().catch(() => ({ message: response.statusText }));
  if (!response.ok) throw new Error(data.message || `request failed (${response.status})`);
  return data.results;
}

function showError(err) {
  flash.textContent = err.message;
  flash.hidden = false;
}

function clearError() {
  flash.hidden = true;
}

function when(value) {
  return value ? new Date(value).toLocaleString() : "never";
}

const statusText = {
  offline: "Offline", pairing: "Pairing", connecting: "Connecting", online: "Online",
  logged_out: "Logged out", banned: "Banned",
};

// ---- Devices ----------------------------------------------------------------------------------

const deviceGrid = document.getElementById("devices");
const cardTemplate = document.getElementById("device-card");

function renderDevice(device) {
  const card = cardTemplate.content.firstElementChild.cloneNode(true);
  card.dataset.id = device.id;
  card.querySelector(".name").textContent = device.name;
  const status = card.querySelector(".status");
  status.textContent = statusText[device.status] || device.status;
  status.classList.add(device.status);
  card.querySelector(".phone").textContent = device.phone || "No number yet";
  card.querySelector(".seen").textContent = `Last seen: ${when(device.last_seen_at)}`;

  const rename = card.querySelector(".rename");
  card.querySelector(".edit").addEventListener("click", () => {
    rename.hidden = false;
    rename.elements.name.value = device.name;
    rename.elements.name.focus();
  });
  rename.querySelector(".cancel").addEventListener("click", () => { rename.hidden = true; });
  rename.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const updated = await api("PUT", `/api/devices/${device.id}`, { name: rename.elements.name.value });
      card.replaceWith(renderDevice(updated));
      clearError();
    } catch (err) { showError(err); }
  });
  card.querySelector(".delete").addEventListener("click", async () => {
    if (!window.confirm(`Delete ${device.name}? Its stored chats and leads go with it.`)) return;
    try {
      await api("DELETE", `/api/devices/${device.id}`);
      card.remove();
      updateEmpty();
      clearError();
    } catch (err) { showError(err); }
  });
  return card;
}

function updateEmpty() {
  document.getElementById("no-devices").hidden = deviceGrid.children.length > 0;
}

async function loadDevices() {
  const devices = await api("GET", "/api/devices");
  deviceGrid.replaceChildren(...devices.map(renderDevice));
  updateEmpty();
}

document.getElementById("add-device").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const phone = form.elements.phone.value.trim();
  try {
    const device = await api("POST", "/api/devices", { name: form.elements.name.value, phone: phone || null });
    deviceGrid.append(renderDevice(device));
    updateEmpty();
    form.reset();
    clearError();
  } catch (err) { showError(err); }
});

// ---- API tokens -------------------------------------------------------------------------------

const tokenRows = document.querySelector("#tokens tbody");

function renderToken(token) {
  const row = document.createElement("tr");
  for (const text of [token.name, `…${token.hint}`, when(token.created_at), when(token.last_used_at)]) {
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
    } catch (err) { showError(err); }
  });
  const cell = document.createElement("td");
  cell.append(revoke);
  row.append(cell);
  return row;
}

async function loadTokens() {
  const tokens = await api("GET", "/api/tokens");
  tokenRows.replaceChildren(...tokens.map(renderToken));
}

document.getElementById("add-token").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  try {
    const created = await api("POST", "/api/tokens", { name: form.elements.name.value });
    document.getElementById("new-token-value").textContent = created.token;
    document.getElementById("new-token").hidden = false;
    tokenRows.prepend(renderToken(created));
    form.reset();
    clearError();
  } catch (err) { showError(err); }
});

// ---- Tabs -------------------------------------------------------------------------------------

const loaders = { devices: loadDevices, tokens: loadTokens };

function selectTab(name) {
  for (const tab of document.querySelectorAll("[data-tab]")) {
    const selected = tab.dataset.tab === name;
    tab.setAttribute("aria-selected", String(selected));
    document.getElementById(`tab-${tab.dataset.tab}`).hidden = !selected;
  }
  loaders[name]().catch(showError);
}

for (const tab of document.querySelectorAll("[data-tab]")) {
  tab.addEventListener("click", () => selectTab(tab.dataset.tab));
}
selectTab("devices");
