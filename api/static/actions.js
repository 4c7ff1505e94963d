// The actions page of one device: a test send followed until it is read, number checks,
// broadcasts with their progress, and the activity log, over the JSON API with the page's CSRF
// token.
"use strict";

const pageEl = document.getElementById("actions-page");
const device = pageEl.dataset.device;

/** Calls the API (common.js); resolves to the whole envelope. */
const api = callApi;

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

// ---- Test send --------------------------------------------------------------------------------

const testForm = document.getElementById("test-send");
const testStatus = document.getElementById("test-status");
let following = null;

/** Shows where send `message` stands, and asks again every second until it is read or failed. */
function follow(message) {
  if (following) clearTimeout(following);
  testStatus.hidden = false;
  testStatus.querySelector(".id").textContent = message.id;
  const status = testStatus.querySelector(".status");
  status.textContent = message.status;
  status.className = `status status-${message.status}`;
  testStatus.querySelector(".reason").textContent = message.reason ? `(${message.reason})` : "";
  const waiting = testStatus.querySelector(".waiting-reason");
  waiting.textContent = message.status === "queued" ? waitingText(message) : "";
  waiting.hidden = !waiting.textContent;
  if (message.status === "read" || message.status === "failed") return;
  following = setTimeout(async () => {
    const latest = await act(() => api("GET", `/api/messages/${message.id}`));
    if (latest) follow(latest.results);
  }, 1000);
}

testForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = newKey();
  const sent = await busy(testForm.querySelector("button[type=submit]"), async () => {
    const body = { to: testForm.to.value, text: testForm.text.value || undefined };
    body.image_base64 = await imageBase64(testForm.image);
    return api("POST", `/api/devices/${device}/actions/test-send`, body, { "Idempotency-Key": key });
  });
  if (!sent) return;
  follow(sent.results);
  loadActivity(false);
});

// ---- Check numbers ----------------------------------------------------------------------------

const checkForm = document.getElementById("check-numbers");
const checkTable = document.getElementById("check-results");
const answers = { on_whatsapp: "on WhatsApp", not_on_whatsapp: "not on WhatsApp", invalid: "invalid" };

checkForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = checkForm.querySelector("button");
  button.disabled = true;
  const checked = await act(() => api("POST", `/api/devices/${device}/actions/check`, { numbers: checkForm.numbers.value }));
  button.disabled = false;
  if (!checked) return;
  const body = checkTable.querySelector("tbody");
  body.replaceChildren();
  for (const line of checked.results) {
    const answer = answers[line.result] + (line.reason ? `: ${line.reason}` : "");
    const row = document.createElement("tr");
    row.className = `checked ${line.result}`;
    row.append(cell(line.line), cell(line.input), cell(line.phone), cell(answer, `answer-${line.result}`));
    body.append(row);
  }
  checkTable.hidden = false;
  loadActivity(false);
});

// ---- Broadcasts -------------------------------------------------------------------------------

const broadcastForm = document.getElementById("broadcast");
const broadcastResult = document.getElementById("broadcast-result");
const broadcastErrors = document.getElementById("broadcast-errors");
const broadcastRows = document.querySelector("#broadcasts tbody");

function showLineErrors(err) {
  broadcastErrors.querySelector("#broadcast-errors-message").textContent = err.message;
  const body = broadcastErrors.querySelector("tbody");
  body.replaceChildren();
  for (const e of err.results.errors) {
    const row = document.createElement("tr");
    row.append(cell(e.line), cell(e.input), cell(e.message));
    body.append(row);
  }
  broadcastErrors.hidden = false;
}

// The key is made once per filled-in form: a second submit of the same form (a double click
// that slips past the disabled button, a retry after a lost answer) finds the same broadcast.
let broadcastKey = newKey();
broadcastForm.addEventListener("input", () => { broadcastKey = newKey(); });

broadcastForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = broadcastForm.querySelector("button[type=submit]");
  if (button.disabled) return;
  broadcastResult.hidden = true;
  broadcastErrors.hidden = true;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    const body = { numbers: broadcastForm.numbers.value, text: broadcastForm.text.value || undefined };
    body.image_base64 = await imageBase64(broadcastForm.image);
    const done = await api("POST", `/api/devices/${device}/broadcasts`, body, { "Idempotency-Key": broadcastKey });
    broadcastResult.textContent = done.message;
    broadcastResult.hidden = false;
    broadcastKey = newKey(); // queued: the same text sent again on purpose is a new broadcast
    loadBroadcasts();
    loadActivity(false);
  } catch (err) {
    if (err.results && Array.isArray(err.results.errors)) showLineErrors(err);
    else showError(err);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
});

function broadcastRow(b) {
  const row = document.createElement("tr");
  row.className = "broadcast";
  row.dataset.id = b.id;
  const p = b.progress;
  const message = (b.has_image ? "[image] " : "") + (b.message ?? "");
  const queued = cell(p.queued, "queued");
  const waiting = waitingText(p);
  if (waiting) {
    const why = document.createElement("span");
    why.className = "waiting-reason";
    why.textContent = waiting;
    queued.append(document.createElement("br"), why);
  }
  row.append(
    cell(b.id), cell(message), cell(p.total), queued, cell(p.sent, "sent"),
    cell(p.delivered, "delivered"), cell(p.read, "read"), cell(p.replied, "replied"), cell(p.failed, "failed"),
    cell(new Date(b.created_at).toLocaleString()),
  );
  return row;
}

async function loadBroadcasts() {
  const list = await act(() => api("GET", `/api/devices/${device}/broadcasts`));
  if (!list) return;
  broadcastRows.replaceChildren(...list.results.map(broadcastRow));
  document.getElementById("no-broadcasts").hidden = list.results.length > 0;
}

// ---- Activity ---------------------------------------------------------------------------------

const activityRows = document.querySelector("#activity tbody");
const moreActivity = document.getElementById("more-activity");
let activityCursor = null;

function activityRow(entry) {
  const row = document.createElement("tr");
  row.className = `activity ${entry.kind}`;
  const who = entry.via === "api" ? `${entry.actor} (API)` : entry.actor;
  row.append(cell(new Date(entry.created_at).toLocaleString()), cell(who), cell(entry.summary), cell(entry.result));
  return row;
}

/** Loads the newest entries (`older` false) or the page after the last one shown. */
async function loadActivity(older) {
  const params = new URLSearchParams({ limit: "20" });
  if (older && activityCursor) params.set("cursor", activityCursor);
  const page = await act(() => api("GET", `/api/devices/${device}/activity?${params}`));
  if (!page) return;
  const rows = page.results.entries.map(activityRow);
  if (older) activityRows.append(...rows);
  else activityRows.replaceChildren(...rows);
  activityCursor = page.results.next_cursor;
  moreActivity.hidden = activityCursor == null;
  document.getElementById("no-activity").hidden = activityRows.children.length > 0;
}

moreActivity.addEventListener("click", () => loadActivity(true));

loadBroadcasts();
loadActivity(false);
// Broadcast progress moves with the device's pace and its receipts; refresh while the page is seen.
setInterval(() => {
  if (document.visibilityState === "visible") loadBroadcasts();
}, 2000);
