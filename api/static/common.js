// What every signed-in page's script shares, loaded before it: calls to the JSON API with the
// page's CSRF token, the flash area that shows what went wrong, and buttons that stay disabled
// while their request is in flight.
//
// An error stays shown until the user dismisses it or does something else (submits a form or
// presses a button): refreshes the page makes on its own never hide it.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const flash = document.getElementById("flash");
const flashText = document.getElementById("flash-text");

/**
 * An Error carrying the server's message for people, the HTTP status, its envelope's `results`
 * and the message as the server wrote it (`raw`: `steps[1].message: …` names the field exactly).
 */
class ApiFailure extends Error {
  constructor(message, status, results, raw) {
    super(message);
    this.status = status;
    this.results = results;
    this.raw = raw === undefined ? message : raw;
  }
}

/** A time (ISO 8601) for people, in their locale, or "never". */
function when(value) {
  return value ? new Date(value).toLocaleString() : "never";
}

/** A new `tag` element with `attrs` (properties) and `children` (nodes or text). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, attrs || {});
  for (const child of children) node.append(child);
  return node;
}

/** A new idempotency key: the same form sent twice (a double click, a retry) is one request. */
function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

/**
 * Calls the JSON API and resolves to its whole envelope (`message`, `results`). `body` goes as
 * JSON, or as it is when it is FormData (an upload). `headers` adds request headers (e.g.
 * `Idempotency-Key`). A 401 sends the browser to the login page; any other failure throws an
 * ApiFailure with the server's message.
 */
async function callApi(method, path, body, headers) {
  const init = {
    method,
    headers: { "X-CSRF-Token": csrf, Accept: "application/json", ...(headers || {}) },
    credentials: "same-origin",
  };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new Error("the server could not be reached; check the connection and try again");
  }
  if (response.status === 401) {
    window.location.assign("/login");
    throw new Error("logged out");
  }
  const data = await response.json().catch(() => ({ message: response.statusText }));
  if (!response.ok) {
    const raw = data.message || `request failed (${response.status})`;
    throw new ApiFailure(readable(raw), response.status, data.results, raw);
  }
  return data;
}

/**
 * The server's message as a sentence for people: capitalised, and a leading field name
 * (`phone: …`, `device_ids: …`) becomes its label ("Phone: …", "Devices: …").
 */
function readable(message) {
  const match = /^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)*): (.*)$/s.exec(message);
  if (!match) return message.charAt(0).toUpperCase() + message.slice(1);
  const words = match[1].replace(/\[\d+\]/g, "").replace(/\./g, " ").replace(/_ids$/, "s").replace(/_id$/, "").split("_");
  const label = words.map((w) => ({ url: "URL", csv: "CSV", jid: "JID", id: "ID" }[w] || w)).join(" ");
  return `${label.charAt(0).toUpperCase()}${label.slice(1)}: ${match[2]}`;
}

/** The open modal dialog's own error line, if one is open: the page's flash is behind it. */
function dialogError() {
  const open = document.querySelector("dialog[open]");
  return open ? open.querySelector(".dialog-error") : null;
}

/** Shows `err`'s message where the user is looking: the open dialog, or the flash area. */
function showError(err) {
  const message = err && err.message ? err.message : String(err);
  const inDialog = dialogError();
  if (inDialog) {
    inDialog.textContent = message;
    inDialog.hidden = false;
    return;
  }
  flashText.textContent = message;
  flash.hidden = false;
}

/** Hides the error shown (the user dismissed it or moved on). */
function clearError() {
  flash.hidden = true;
  for (const line of document.querySelectorAll(".dialog-error")) line.hidden = true;
}

/** Runs `action`, showing its error; resolves to undefined on failure. */
async function act(action) {
  try {
    return await action();
  } catch (err) {
    showError(err);
    return undefined;
  }
}

/**
 * Runs `action` with `button` disabled and marked busy until it settles, so a double click
 * sends one request. Resolves to what `act` does.
 */
async function busy(button, action) {
  if (button.disabled) return undefined;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await act(action);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

document.getElementById("flash-close").addEventListener("click", (event) => {
  event.stopPropagation();
  clearError();
});

// The user's next action supersedes the error shown: a submitted form, or a pressed button.
document.addEventListener("submit", () => clearError(), true);
document.addEventListener("click", (event) => {
  if (event.target.closest("button:not(.flash-close)")) clearError();
}, true);

/** The longest side, in pixels, of images made smaller in the browser (the server sends 1200). */
const IMAGE_SIDE = 1600;

/**
 * The image file chosen in `input` as base64 JPEG, made at most IMAGE_SIDE pixels on its longest
 * side in the browser first, so photos straight from a phone (5 MB and more) fit the request
 * limit; undefined when no file is chosen.
 */
async function imageBase64(input) {
  const file = input.files[0];
  if (!file) return undefined;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (err) {
    throw new Error(`${file.name} could not be read as an image (JPEG, PNG, WebP or GIF)`);
  }
  const scale = Math.min(1, IMAGE_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff"; // transparent areas become white, not black, in a JPEG
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const url = canvas.toDataURL("image/jpeg", 0.85);
  return url.slice(url.indexOf(",") + 1);
}

/**
 * Why queued sends wait, in one line for people ("" when nothing holds them): the reason and,
 * when known, the time they should move. `item` has `waiting_reason` and `next_attempt_at`.
 */
function waitingText(item) {
  if (!item || !item.waiting_reason) return "";
  const reason = item.waiting_reason.charAt(0).toUpperCase() + item.waiting_reason.slice(1);
  if (!item.next_attempt_at) return `${reason}.`;
  const at = new Date(item.next_attempt_at);
  const sameDay = at.toDateString() === new Date().toDateString();
  const time = sameDay ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : at.toLocaleString();
  return `${reason}. Next attempt ${sameDay ? "at " : "on "}${time}.`;
}
