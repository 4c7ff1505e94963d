// The dashboard's Webhooks tab: the URL, events and secret of the user's webhook, a test event,
// and the deliveries with a replay button for dead ones. Uses `api` and `when` from app.js,
// `showError` and `clearError` from common.js.
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
    const texts = [String(d.id), d.event, d.status, String(d.attempts), d.last_error || "", when(d.created_at)];
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

  statusFilter.addEventListener("change", () => loadDeliveries().catch(showError));
  document.getElementById("webhook-refresh").addEventListener("click", () => loadDeliveries().catch(showError));

  window.webhooksTab = {
    async show() {
      showSettings(await api("GET", "/api/webhook"));
      await loadDeliveries();
    },
  };
})();
