// The Admin page: accounts with their actions, the fleet, dead letters and the administrator log,
// all drawn from the admin API. Each action redraws what it changed and the log.
"use strict";

/** Calls the API (common.js); resolves to the whole envelope (`message`, `results`). */
const call = (method, path, body) => callApi(method, path, body);

const done = document.getElementById("admin-done");
const searchForm = document.getElementById("account-search");

/** Says what an action did, above the lists, until the next one. */
function say(message) {
  done.textContent = message.charAt(0).toUpperCase() + message.slice(1);
  done.hidden = false;
}

async function drawAccounts() {
  const search = searchForm.elements.search.value.trim();
  const found = await act(async () => (await call("GET", `/api/admin/users?search=${encodeURIComponent(search)}&limit=500`)).results);
  if (!found) return;
  document.getElementById("no-accounts").hidden = found.length > 0;
  document.getElementById("accounts").replaceChildren(...found.map(accountCard));
}

function accountCard(account) {
  const me = account.email === document.getElementById("account-link").textContent.trim();
  const heading = el("h3", { className: "email", id: `account-${account.id}` }, account.email);
  if (account.is_admin) heading.append(" ", el("span", { className: "badge" }, "admin"));
  if (account.disabled_at) heading.append(" ", el("span", { className: "badge off state" }, "disabled"));
  if (account.must_change_password) heading.append(" ", el("span", { className: "badge warn" }, "temporary password"));
  if (me) heading.append(" ", el("span", { className: "hint" }, "(you)"));
  const facts = el("p", { className: "hint facts" },
    `${account.devices} device${account.devices === 1 ? "" : "s"} (${account.devices_online} online) · `,
    `${account.sends_30d} sent in 30 days · last active ${when(account.last_active_at)} · since ${new Date(account.created_at).toLocaleDateString()}`);
  const item = el("li", { className: `card account${account.disabled_at ? " disabled" : ""}` }, heading, facts);
  item.dataset.id = account.id;
  if (account.disabled_at) item.append(el("p", { className: "error" }, `Disabled ${when(account.disabled_at)}: cannot log in, its tokens and sends are stopped.`));
  if (me) return item;

  const toggle = account.disabled_at
    ? el("button", { type: "button", className: "enable" }, "Enable")
    : el("button", { type: "button", className: "disable danger" }, "Disable");
  toggle.addEventListener("click", () => busy(toggle, async () => {
    const verb = account.disabled_at ? "enable" : "disable";
    const reply = await call("POST", `/api/admin/users/${account.id}/${verb}`);
    say(reply.message);
    await refresh();
  }));
  const temporary = el("button", { type: "button", className: "temporary" }, "Temporary password");
  const remove = el("button", { type: "button", className: "delete danger" }, "Delete…");
  for (const button of [toggle, temporary, remove]) button.setAttribute("aria-describedby", heading.id);

  const passwordForm = el("form", { className: "row password-form", hidden: true },
    el("input", { name: "password", type: "text", minLength: 8, maxLength: 256, required: true, autocomplete: "off", placeholder: "At least 8 characters" }),
    el("button", { type: "submit", className: "primary" }, "Set"));
  passwordForm.elements.password.setAttribute("aria-label", `Temporary password for ${account.email}`);
  temporary.addEventListener("click", () => {
    passwordForm.hidden = !passwordForm.hidden;
    if (!passwordForm.hidden) passwordForm.elements.password.focus();
  });
  const passwordError = formError("password-error");
  passwordForm.addEventListener("submit", (event) => {
    event.preventDefault();
    inForm(passwordForm, passwordError, async () => {
      const reply = await call("POST", `/api/admin/users/${account.id}/temporary-password`, { password: passwordForm.elements.password.value });
      say(`${reply.message}. Give them the password yourself: it is not shown again.`);
      await refresh();
    });
  });

  const deleteForm = el("form", { className: "row delete-form", hidden: true },
    el("input", { name: "confirm", type: "text", required: true, autocomplete: "off", placeholder: account.email }),
    el("button", { type: "submit", className: "danger" }, "Delete for good"));
  deleteForm.elements.confirm.setAttribute("aria-label", `Type ${account.email} to delete it and everything stored for it`);
  const deleteHint = el("p", { className: "hint", hidden: true }, `Type ${account.email} to delete the account, its devices, chats, leads, campaigns and sends. This cannot be undone.`);
  remove.addEventListener("click", () => {
    deleteForm.hidden = !deleteForm.hidden;
    deleteHint.hidden = deleteForm.hidden;
    if (!deleteForm.hidden) deleteForm.elements.confirm.focus();
  });
  const deleteError = formError("delete-error");
  deleteForm.addEventListener("submit", (event) => {
    event.preventDefault();
    inForm(deleteForm, deleteError, async () => {
      const reply = await call("DELETE", `/api/admin/users/${account.id}`, { confirm: deleteForm.elements.confirm.value });
      say(reply.message);
      await refresh();
    });
  });
  item.append(el("div", { className: "row actions" }, toggle, temporary, remove), passwordForm, passwordError, deleteHint, deleteForm, deleteError);
  return item;
}

/** An error line under one account's form, hidden until that form is refused. */
function formError(className) {
  const line = el("p", { className: `error ${className}`, hidden: true });
  line.setAttribute("role", "alert");
  return line;
}

/**
 * Runs a form's `action` with its button busy; a refusal shows under the form, where the
 * administrator is looking, rather than in the flash area at the top of a long page.
 */
async function inForm(form, errorLine, action) {
  errorLine.hidden = true;
  await busy(form.querySelector("button[type=submit]"), async () => {
    try {
      await action();
    } catch (err) {
      errorLine.textContent = err.message;
      errorLine.hidden = false;
    }
  });
}

async function drawFleet() {
  const fleet = await act(async () => (await call("GET", "/api/admin/fleet")).results);
  if (!fleet) return;
  const stats = { ...fleet, workers: fleet.workers.length };
  for (const dd of document.querySelectorAll("#fleet-stats dd")) dd.textContent = String(stats[dd.dataset.stat]);
  document.getElementById("workers").replaceChildren(...fleet.workers.map((w) => el("li", { className: "card worker" },
    el("h3", {}, w.id),
    el("p", { className: "hint" }, `${w.sessions} of ${w.capacity} sessions · heartbeat ${when(w.heartbeat_at)} · up since ${when(w.started_at)}`))));
}

async function drawDeadLetters() {
  const letters = await act(async () => (await call("GET", "/api/admin/dead-letters?limit=50")).results);
  if (!letters) return;
  document.getElementById("no-dead").hidden = letters.length > 0;
  document.getElementById("dead-letters").replaceChildren(...letters.map((letter) => {
    const item = el("li", { className: "card dead" },
      el("h3", {}, `#${letter.id} · ${letter.queue}`),
      el("p", { className: "hint" }, `Gave up ${when(letter.failed_at)} after ${letter.attempts} attempts: ${letter.error}`),
      el("p", { className: "job" }, letter.job));
    if (letter.replayed_at) {
      item.append(el("p", { className: "hint" }, `Replayed ${when(letter.replayed_at)}.`));
    } else {
      const replay = el("button", { type: "button", className: "replay" }, "Replay");
      replay.addEventListener("click", () => busy(replay, async () => {
        say((await call("POST", `/api/admin/dead-letters/${letter.id}/replay`)).message);
        await refresh();
      }));
      item.append(el("div", { className: "row" }, replay));
    }
    return item;
  }));
}

async function drawLog() {
  const entries = await act(async () => (await call("GET", "/api/admin/actions?limit=100")).results);
  if (!entries) return;
  document.getElementById("no-actions").hidden = entries.length > 0;
  document.getElementById("actions").replaceChildren(...entries.map((entry) => {
    const stamp = el("time", { dateTime: entry.at }, when(entry.at));
    const target = entry.target_email ? ` ${entry.target_email}` : "";
    return el("li", { className: "action" }, stamp, `${entry.actor_email}: ${entry.action.replace(/_/g, " ")}${target}`,
      entry.detail ? el("span", { className: "hint" }, ` (${entry.detail})`) : "");
  }));
}

async function refresh() {
  await Promise.all([drawAccounts(), drawFleet(), drawDeadLetters(), drawLog()]);
}

searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  drawAccounts();
});
refresh();
// The fleet moves on its own: look again every 15 s.
setInterval(drawFleet, 15000);
