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

const pad = (n) => String(n).padStart(2, "0");

const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/** Today in the browser's time zone, as `YYYY-MM-DD`. */
function today() {
  const now = new Date();
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

/** The day of the calendar that takes the keyboard: the one last focused, or today. */
let focusDate = today();

/**
 * Draws the year: a month per block with weekday headings, today marked, up to five campaigns a
 * day and "+N more" listing the rest. Days are buttons; the arrow keys move between them (one
 * tab stop for the whole calendar), Enter plans a campaign on the focused day.
 */
async function drawCalendar(focus) {
  document.getElementById("year").textContent = year;
  const days = await act(() => api("GET", `/api/campaigns/summary?year=${year}`));
  if (!days) return;
  const byDate = new Map(days.map((d) => [d.date, d]));
  const now = today();
  if (!focusDate.startsWith(`${year}-`)) focusDate = now.startsWith(`${year}-`) ? now : `${year}-01-01`;
  calendar.replaceChildren();
  for (let month = 0; month < 12; month++) {
    const grid = el("div", { className: "days" });
    // The headings are for the eye: each day's button names its weekday for screen readers.
    const head = el("div", { className: "weekdays" });
    head.setAttribute("aria-hidden", "true");
    WEEKDAYS.forEach((w, i) => head.append(el("span", { className: "weekday", title: WEEKDAY_NAMES[i] }, w)));
    grid.append(head);
    const first = new Date(Date.UTC(year, month, 1)).getUTCDay();
    for (let i = 0; i < (first + 6) % 7; i++) grid.append(el("div", { className: "day blank" }));
    const length = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
    for (let d = 1; d <= length; d++) {
      const date = `${year}-${pad(month + 1)}-${pad(d)}`;
      const day = byDate.get(date);
      const cell = el("div", { className: "day" });
      cell.dataset.date = date;
      const weekday = WEEKDAY_NAMES[(new Date(Date.UTC(year, month, d)).getUTCDay() + 6) % 7];
      const label = `${weekday} ${d} ${MONTHS[month]}${date === now ? ", today" : ""}${day ? `, ${day.count} campaign${day.count === 1 ? "" : "s"}` : ""}`;
      const open = el("button", { type: "button", className: "num", tabIndex: date === focusDate ? 0 : -1 }, String(d));
      open.setAttribute("aria-label", `${label}: plan a campaign`);
      open.addEventListener("click", () => openNew(date));
      open.addEventListener("focus", () => { focusDate = date; });
      open.addEventListener("keydown", moveFocus);
      cell.append(open);
      if (date === now) {
        cell.classList.add("today");
        cell.setAttribute("aria-current", "date");
      }
      cell.addEventListener("click", (event) => { if (event.target === cell) openNew(date); });
      if (day) {
        for (const c of day.campaigns) {
          const chip = el("button", { type: "button", className: `chip ${c.status}`, title: `${c.title} (${c.status})`}, c.niche);
          chip.setAttribute("aria-label", `${c.title}, ${c.niche}, ${c.status}`);
          chip.dataset.campaign = c.id;
          chip.addEventListener("click", (event) => {
            event.stopPropagation();
            openExisting(c.id);
          });
          cell.append(chip);
        }
        if (day.count > day.campaigns.length) {
          const more = el("button", { type: "button", className: "more" }, `+${day.count - day.campaigns.length} more`);
          more.addEventListener("click", (event) => {
            event.stopPropagation();
            listDay(date);
          });
          cell.append(more);
        }
      }
      grid.append(cell);
    }
    const section = el("section", { className: "month" }, el("h3", {}, MONTHS[month]), grid);
    section.dataset.month = String(month + 1);
    if (`${year}-${pad(month + 1)}` === now.slice(0, 7)) section.classList.add("current");
    calendar.append(section);
  }
  const target = calendar.querySelector(`.day[data-date="${focusDate}"]`);
  if (target) {
    target.closest(".month").scrollIntoView({ block: "start" });
    if (focus) target.querySelector(".num").focus({ preventScroll: true });
  }
}

/** Arrow keys move a day (left, right) or a week (up, down); Home/End the week's ends. */
function moveFocus(event) {
  const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -7, ArrowDown: 7 }[event.key];
  const cell = event.target.closest(".day");
  if (!cell) return;
  const current = new Date(`${cell.dataset.date}T12:00:00Z`);
  let next;
  if (step) next = new Date(current.getTime() + step * 86400000);
  else if (event.key === "Home") next = new Date(current.getTime() - ((current.getUTCDay() + 6) % 7) * 86400000);
  else if (event.key === "End") next = new Date(current.getTime() + (6 - ((current.getUTCDay() + 6) % 7)) * 86400000);
  else return;
  event.preventDefault();
  const date = next.toISOString().slice(0, 10);
  focusDate = date;
  const nextYear = Number(date.slice(0, 4));
  if (nextYear !== year) {
    year = nextYear;
    drawCalendar(true);
    return;
  }
  for (const button of calendar.querySelectorAll(".num[tabindex='0']")) button.tabIndex = -1;
  const target = calendar.querySelector(`.day[data-date="${date}"] .num`);
  target.tabIndex = 0;
  target.focus();
}

/** Lists every campaign of `date` (the calendar shows five a day) in the day's dialog. */
async function listDay(date) {
  const campaigns = await act(() => api("GET", `/api/campaigns?year=${date.slice(0, 4)}`));
  if (!campaigns) return;
  const those = campaigns
    .filter((c) => localParts(c.send_at, c.time_zone).day === date)
    .sort((a, b) => a.send_at.localeCompare(b.send_at));
  const list = document.getElementById("day-campaigns");
  list.replaceChildren(...those.map((c) => {
    const open = el("button", { type: "button", className: "link" }, `${localParts(c.send_at, c.time_zone).time} ${c.title}`);
    open.dataset.campaign = c.id;
    open.addEventListener("click", () => {
      dayDialog.close();
      openExisting(c.id);
    });
    return el("li", {}, open, el("span", { className: "hint" }, ` ${c.niche} · ${c.status}`));
  }));
  document.getElementById("day-title").textContent = `Campaigns on ${date}`;
  document.getElementById("day-new").onclick = () => {
    dayDialog.close();
    openNew(date);
  };
  dayDialog.showModal();
}

const dayDialog = document.getElementById("day-list");
document.getElementById("day-close").addEventListener("click", () => dayDialog.close());

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
  for (const input of form.querySelectorAll("input, textarea, select")) input.disabled = !editable;
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
  showCap();
  if (!editor.open) {
    clearError();
    templatePicker.reset();
    document.getElementById("previews").hidden = true;
    editor.showModal();
  }
}

/** The limit per device belongs to a pool only. */
function showCap() {
  document.getElementById("cap-field").hidden = form.elements.distribution.value !== "pool";
  document.getElementById("cap-hint").hidden = form.elements.distribution.value !== "pool";
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
  f.distribution.value = campaign.distribution;
  f.per_device_cap.value = campaign.per_device_cap ?? "";
  const leftOut = document.getElementById("report-left-out");
  leftOut.hidden = !campaign.left_out;
  const n = campaign.left_out ?? 0;
  leftOut.textContent = `${n} ${n === 1 ? "number of the pool was" : "numbers of the pool were"} left out by the limit per device.`;
  for (const box of form.querySelectorAll('input[name="device"]')) box.checked = campaign.device_ids.includes(Number(box.value));
  show(campaign);
  await drawReport(campaign.id);
}

function bar(counts) {
  const total = Math.max(counts.total, 1);
  const progress = el("div", { className: "progress", title: STATES.map((s) => `${s} ${counts[s]}`).join(", ") });
  for (const s of STATES) progress.append(el("span", { className: s, style: `width:${(counts[s] * 100) / total}%` }));
  const done = counts.total - counts.queued;
  const lines = [el("div", {}, `${done} of ${counts.total} done: ` + STATES.map((s) => `${s} ${counts[s]} (${counts.percent[s]}%)`).join(", ")), progress];
  const waiting = waitingText(counts);
  if (waiting) lines.splice(1, 0, el("div", { className: "waiting-reason" }, waiting));
  return lines;
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
    distribution: f.distribution.value,
  };
  if (f.distribution.value === "pool" && f.per_device_cap.value) body.per_device_cap = Number(f.per_device_cap.value);
  // The server copies the template's image unless one is chosen here.
  const template = templatePicker.chosen();
  if (template) body.template_id = template;
  const saved = await busy(document.getElementById("save"), async () => {
    if (f.image.files.length) body.image_base64 = await imageBase64(f.image);
    return f.id.value ? api("PUT", `/api/campaigns/${f.id.value}`, body) : api("POST", "/api/campaigns", body);
  });
  if (!saved) return;
  editor.close();
  await drawCalendar();
}

/**
 * Shows three renders of the message, as three recipients would get it (greeting by the form's
 * time zone); a mistake in its choices or variables shows the API's error with its position.
 */
async function preview() {
  const f = form.elements;
  const list = document.getElementById("previews");
  clearError();
  const result = await busy(document.getElementById("preview"), () =>
    api("POST", "/api/templates/preview", { message: f.message.value, time_zone: f.time_zone.value || "UTC", count: 3 }));
  if (!result) {
    list.hidden = true;
    return;
  }
  list.replaceChildren(...result.renders.map((text) => el("li", {}, text)));
  list.hidden = false;
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
for (const choice of form.querySelectorAll('input[name="distribution"]')) choice.addEventListener("change", showCap);
document.getElementById("preview").addEventListener("click", preview);
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
document.getElementById("this-month").addEventListener("click", () => {
  focusDate = today();
  year = Number(focusDate.slice(0, 4));
  drawCalendar(true);
});
drawCalendar();

// "Start a campaign" on the Templates page links here: the form opens on today with that
// template chosen. The address loses the parameter so a reload shows the calendar.
const startFrom = new URLSearchParams(window.location.search).get("template");
if (startFrom) {
  history.replaceState(null, "", "/campaigns");
  openNew(today());
  templatePicker.choose(startFrom);
}
