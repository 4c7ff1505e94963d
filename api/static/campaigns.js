// The Campaigns page: a year calendar (up to five campaigns a day, with their niche); a day opens
// the form to plan a campaign there, a campaign opens it for editing, with its progress per device.
"use strict";

const calendar = document.getElementById("calendar");
const editor = document.getElementById("editor");
const form = document.getElementById("campaign-form");
const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
  "October", "November", "December"];
const STATES = ["sent", "delivered", "read", "replied", "failed"];
let year = new Date().getFullYear();
let current = null;

/** Calls the API (common.js); resolves to the envelope's `results`. */
const api = async (method, path, body) => (await callApi(method, path, body)).results;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, attrs || {});
  for (const child of children) node.append(child);
  return node;
}

const pad = (n) => String(n).padStart(2, "0");

async function drawCalendar() {
  document.getElementById("year").textContent = year;
  const days = await act(() => api("GET", `/api/campaigns/summary?year=${year}`));
  if (!days) return;
  const byDate = new Map(days.map((d) => [d.date, d]));
  calendar.replaceChildren();
  for (let month = 0; month < 12; month++) {
    const grid = el("div", { className: "days" });
    const first = new Date(Date.UTC(year, month, 1)).getUTCDay();
    for (let i = 0; i < (first + 6) % 7; i++) grid.append(el("div", { className: "day blank" }));
    const length = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
    for (let d = 1; d <= length; d++) {
      const date = `${year}-${pad(month + 1)}-${pad(d)}`;
      const cell = el("div", { className: "day", title: date }, el("span", { className: "num" }, String(d)));
      cell.dataset.date = date;
      cell.addEventListener("click", () => openNew(date));
      const day = byDate.get(date);
      if (day) {
        for (const c of day.campaigns) {
          const chip = el("span", { className: `chip ${c.status}`, title: `${c.title} (${c.status})` }, c.niche);
          chip.dataset.campaign = c.id;
          chip.addEventListener("click", (event) => {
            event.stopPropagation();
            openExisting(c.id);
          });
          cell.append(chip);
        }
        if (day.count > day.campaigns.length) cell.append(el("span", { className: "more" }, `+${day.count - day.campaigns.length} more`));
      }
      grid.append(cell);
    }
    calendar.append(el("section", { className: "month" }, el("h3", {}, MONTHS[month]), grid));
  }
}

function localParts(iso, zone) {
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  }).formatToParts(new Date(iso));
  const get = (type) => parts.find((p) => p.type === type).value;
  return { day: `${get("year")}-${get("month")}-${get("day")}`, time: `${get("hour")}:${get("minute")}` };
}

function show(campaign) {
  current = campaign;
  const editable = !campaign || campaign.status === "draft" || campaign.status === "scheduled";
  for (const input of form.querySelectorAll("input, textarea")) input.disabled = !editable;
  document.getElementById("save").hidden = !editable;
  const status = campaign ? campaign.status : "new";
  document.getElementById("campaign-status").textContent = status;
  document.getElementById("editor-title").textContent = campaign ? campaign.title : "New campaign";
  document.getElementById("pause").hidden = !["scheduled", "running"].includes(status);
  document.getElementById("resume").hidden = status !== "paused";
  document.getElementById("cancel-campaign").hidden = !["draft", "scheduled", "running", "paused"].includes(status);
  document.getElementById("retry").hidden = !["running", "paused", "finished"].includes(status);
  document.getElementById("delete").hidden = !campaign || status === "running";
  document.getElementById("report").hidden = !campaign;
  if (!editor.open) editor.showModal();
}

function openNew(date) {
  form.reset();
  form.elements.id.value = "";
  form.elements.day.value = date;
  form.elements.time_zone.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  show(null);
}

async function openExisting(id) {
  const campaign = await act(() => api("GET", `/api/campaigns/${id}`));
  if (!campaign) return;
  form.reset();
  const f = form.elements;
  f.id.value = campaign.id;
  f.title.value = campaign.title;
  f.niche.value = campaign.niche;
  f.message.value = campaign.message;
  f.time_zone.value = campaign.time_zone;
  const local = localParts(campaign.send_at, campaign.time_zone);
  f.day.value = local.day;
  f.time.value = local.time;
  f.draft.checked = campaign.status === "draft";
  for (const box of form.querySelectorAll('input[name="device"]')) box.checked = campaign.device_ids.includes(Number(box.value));
  show(campaign);
  await drawReport(campaign.id);
}

function bar(counts) {
  const total = Math.max(counts.total, 1);
  const progress = el("div", { className: "progress", title: STATES.map((s) => `${s} ${counts[s]}`).join(", ") });
  for (const s of STATES) progress.append(el("span", { className: s, style: `width:${(counts[s] * 100) / total}%` }));
  const done = counts.total - counts.queued;
  return [el("div", {}, `${done} of ${counts.total} done: ` + STATES.map((s) => `${s} ${counts[s]} (${counts.percent[s]}%)`).join(", ")), progress];
}

async function drawReport(id) {
  const report = await act(() => api("GET", `/api/campaigns/${id}/report`));
  if (!report) return;
  document.getElementById("report-total").replaceChildren(...bar(report.totals));
  const devices = document.getElementById("report-devices");
  devices.replaceChildren();
  for (const d of report.devices) {
    const row = el("div", { className: "device-progress" }, el("b", {}, d.name), ...bar(d.counts));
    row.dataset.device = d.device_id;
    devices.append(row);
  }
}

function readImage(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",")[1]);
    reader.onerror = () => reject(new Error("the image could not be read"));
    reader.readAsDataURL(file);
  });
}

async function save(event) {
  event.preventDefault();
  const f = form.elements;
  const body = {
    title: f.title.value,
    niche: f.niche.value,
    message: f.message.value,
    send_at: `${f.day.value}T${f.time.value}`,
    time_zone: f.time_zone.value,
    device_ids: [...form.querySelectorAll('input[name="device"]:checked')].map((b) => Number(b.value)),
    status: f.draft.checked ? "draft" : "scheduled",
  };
  const saved = await act(async () => {
    if (f.image.files.length) body.image_base64 = await readImage(f.image.files[0]);
    return f.id.value ? api("PUT", `/api/campaigns/${f.id.value}`, body) : api("POST", "/api/campaigns", body);
  });
  if (!saved) return;
  editor.close();
  await drawCalendar();
}

async function setStatus(status) {
  const saved = await act(() => api("PUT", `/api/campaigns/${current.id}`, { status }));
  if (saved) {
    show(saved);
    await drawCalendar();
  }
}

// While a campaign that can still change is open, its status and progress refresh every few
// seconds, so a running campaign can be watched; not while the page is hidden.
setInterval(async () => {
  if (!editor.open || !current || document.hidden) return;
  if (!["scheduled", "running", "paused"].includes(current.status)) return;
  const id = current.id;
  const campaign = await act(() => api("GET", `/api/campaigns/${id}`));
  if (!campaign || !editor.open || !current || current.id !== id) return;
  show(campaign);
  await drawReport(id);
}, 5000);

form.addEventListener("submit", save);
document.getElementById("pause").addEventListener("click", () => setStatus("paused"));
document.getElementById("resume").addEventListener("click", () => setStatus("running"));
document.getElementById("cancel-campaign").addEventListener("click", () => setStatus("cancelled"));
document.getElementById("retry").addEventListener("click", async () => {
  if (await act(() => api("POST", `/api/campaigns/${current.id}/retry`, {}))) await openExisting(current.id);
});
document.getElementById("delete").addEventListener("click", async () => {
  if (await act(() => api("DELETE", `/api/campaigns/${current.id}`))) {
    editor.close();
    await drawCalendar();
  }
});
document.getElementById("close").addEventListener("click", () => editor.close());
document.getElementById("prev-year").addEventListener("click", () => { year -= 1; drawCalendar(); });
document.getElementById("next-year").addEventListener("click", () => { year += 1; drawCalendar(); });
drawCalendar();
