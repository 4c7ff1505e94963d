// The dashboard's Webhooks tab: the URL, events and secret of the user's webhook, a test event,
// the devices with a webhook of their own, and the deliveries with a replay button for dead ones.
// Uses `api` from app.js; `when`, `el`, `busy`, `showError` and `clearError` from common.js.
"use strict";

(() => {
  const form = document.getElementById("webhook-form");
  const hint = document.getElementById("webhook-secret-hint");
  const secretBox = document.getElementById("webhook-secret");
  const statusFilter = document.getElementById("webhook-status");
  const rows = document.querySelector("#webhook-deliveries tbody");

  function showSettings(hook) {
    const boxes = form.querySelectorAll('input[name="events"]');
    if (!hook) {
      form.elements.url.value = "";
      form.elements.enabled.checked = true;
      for (const box of boxes) box.checked = true;
      hint.hidden = true;
      return;
    }
    form.elements.url.value = hook.url;
    form.elements.enabled.checked = hook.enabled;
    for (const box of boxes) box.checked = hook.events.includes(box.value);
    hint.querySelector("code").textContent = `…${hook.secret_hint}`;
    form.elements.rotate.checked = false;
    hint.hidden = false;
  }

  function renderDelivery(d) {
    const row = document.createElement("tr");
    row.dataset.id = String(d.id);
    row.dataset.status = d.status;
    const to = d.device_id ? `Device ${deviceNames.get(d.device_id) || d.device_id}` : "Account";
    const texts = [String(d.id), d.event, to, d.status, String(d.attempts), d.last_error || "", when(d.created_at)];
    for (const text of texts) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    const cell = document.createElement("td");
    if (d.status === "dead") {
      const replay = document.createElement("button");
      replay.className = "replay";
      replay.textContent = "Replay";
      replay.addEventListener("click", async () => {
        try {
          const again = await api("POST", `/api/webhook/deliveries/${d.id}/replay`);
          row.replaceWith(renderDelivery(again));
          clearError();
        } catch (err) { showError(err); }
      });
      cell.append(replay);
    }
    row.append(cell);
    return row;
  }

  async function loadDeliveries() {
    const status = statusFilter.value;
    const list = await api("GET", "/api/webhook/deliveries" + (status ? `?status=${status}` : ""));
    rows.replaceChildren(...list.map(renderDelivery));
    document.getElementById("no-deliveries").hidden = list.length > 0;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const events = [...form.querySelectorAll('input[name="events"]:checked')].map((b) => b.value);
    if (events.length === 0) {
      showError(new Error("Events: choose at least one event"));
      return;
    }
    const body = {
      url: form.elements.url.value,
      events,
      enabled: form.elements.enabled.checked,
      rotate_secret: !hint.hidden && form.elements.rotate.checked,
    };
    try {
      const hook = await api("PUT", "/api/webhook", body);
      showSettings(hook);
      secretBox.hidden = !hook.secret;
      document.getElementById("webhook-secret-value").textContent = hook.secret || "";
      clearError();
    } catch (err) { showError(err); }
  });

  document.getElementById("webhook-test").addEventListener("click", async () => {
    try {
      await api("POST", "/api/webhook/test");
      await loadDeliveries();
      clearError();
    } catch (err) { showError(err); }
  });

  document.getElementById("webhook-delete").addEventListener("click", async () => {
    if (!window.confirm("Remove the webhook? Events stop being sent.")) return;
    try {
      await api("DELETE", "/api/webhook");
      showSettings(null);
      secretBox.hidden = true;
      clearError();
    } catch (err) { showError(err); }
  });

  const deviceForm = document.getElementById("device-webhook-form");
  const deviceList = document.getElementById("device-webhooks");
  const deviceSecret = document.getElementById("device-webhook-secret");
  /** Device names by id, for the lists. */
  const deviceNames = new Map();

  /** One device's own webhook, with Edit and Remove. */
  function renderDeviceHook(device, hook) {
    // Campaign events are the account's, whatever a device's webhook lists.
    const events = hook.events.filter((e) => e !== "campaign.finished");
    const what = events.length === 5 ? "every event" : events.join(", ");
    const edit = el("button", { type: "button", className: "edit" }, "Edit");
    edit.addEventListener("click", () => {
      deviceForm.elements.device.value = String(device.id);
      deviceForm.elements.url.value = hook.url;
      for (const box of deviceForm.querySelectorAll('input[name="events"]')) box.checked = hook.events.includes(box.value);
      deviceForm.elements.url.focus();
    });
    const remove = el("button", { type: "button", className: "delete danger link" }, "Remove");
    remove.addEventListener("click", () => busy(remove, async () => {
      await api("DELETE", `/api/devices/${device.id}/webhook`);
      await loadDeviceHooks();
    }));
    const item = el("li", { className: "card device-webhook" },
      el("b", {}, device.name), " → ", el("code", { className: "url" }, hook.url),
      el("span", { className: "hint" }, ` (${what}; secret ends with …${hook.secret_hint})`),
      el("div", { className: "row" }, edit, remove));
    item.dataset.device = String(device.id);
    return item;
  }

  async function loadDeviceHooks() {
    const devices = await api("GET", "/api/devices");
    deviceNames.clear();
    for (const device of devices) deviceNames.set(device.id, device.name);
    const chosen = deviceForm.elements.device.value;
    deviceForm.elements.device.replaceChildren(...devices.map((d) => el("option", { value: String(d.id) }, d.name)));
    if (chosen) deviceForm.elements.device.value = chosen;
    deviceForm.hidden = devices.length === 0;
    const hooks = await Promise.all(devices.map(async (d) => [d, await api("GET", `/api/devices/${d.id}/webhook`)]));
    const set = hooks.filter(([, hook]) => hook);
    deviceList.replaceChildren(...(set.length
      ? set.map(([device, hook]) => renderDeviceHook(device, hook))
      : [el("li", { className: "hint" }, "No device has a webhook of its own: every event goes to the webhook above.")]));
  }

  deviceForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const events = [...deviceForm.querySelectorAll('input[name="events"]:checked')].map((b) => b.value);
    if (events.length === 0) {
      showError(new Error("Events: choose at least one event"));
      return;
    }
    busy(deviceForm.querySelector("button[type=submit]"), async () => {
      const hook = await api("PUT", `/api/devices/${deviceForm.elements.device.value}/webhook`, { url: deviceForm.elements.url.value, events });
      deviceSecret.hidden = !hook.secret;
      document.getElementById("device-webhook-secret-value").textContent = hook.secret || "";
      deviceForm.elements.url.value = "";
      await loadDeviceHooks();
    });
  });

  statusFilter.addEventListener("change", () => loadDeliveries().catch(showError));
  document.getElementById("webhook-refresh").addEventListener("click", () => loadDeliveries().catch(showError));

  window.webhooksTab = {
    async show() {
      showSettings(await api("GET", "/api/webhook"));
      await loadDeviceHooks();
      await loadDeliveries();
    },
  };
})();
