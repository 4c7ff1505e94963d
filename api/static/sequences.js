// The Sequences page: the user's sequences as cards, each with its report (every number opens
// the leads behind it; the report refreshes itself while open), a preview of when each step
// would go for a sample lead, leads to enrol by hand, and pause, resume, archive and delete; one
// form builds a new sequence or changes one, step by step. A refused save shows the API's error
// next to what it names: a step's field inside that step.
"use strict";

const form = document.getElementById("sequence-form");
const list = document.getElementById("sequences");
const saved = document.getElementById("saved");
const stepsList = document.getElementById("steps");
const stepTemplate = document.getElementById("step-template");

/** How often an open report is fetched again, in milliseconds. */
const REPORT_REFRESH_MS = 5000;
/** Leads shown per page when drilling into a report's number or choosing leads to enrol. */
const PAGE = 100;

/** Calls the API (common.js); resolves to the envelope's `results`. */
const api = async (method, path, body) => (await callApi(method, path, body)).results;

/** The browser's time zone, the default of a new sequence. */
const zone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

/** Device names by id, from the form's choices. */
const deviceNames = new Map(
  [...form.querySelectorAll('input[name="device"]')].map((box) => [Number(box.value), box.parentElement.textContent.trim()]),
);

const DAY_LABELS = { mon: "Mon", tue: "Tue", wed: "Wed", thu: "Thu", fri: "Fri", sat: "Sat", sun: "Sun" };

/** "Mon–Fri" for a run of days, else the days listed. */
function daysText(days) {
  const order = Object.keys(DAY_LABELS);
  if (days.length === 7) return "every day";
  const idx = days.map((d) => order.indexOf(d)).sort((a, b) => a - b);
  const run = idx.length > 2 && idx.every((v, i) => i === 0 || v === idx[i - 1] + 1);
  if (run) return `${DAY_LABELS[order[idx[0]]]}–${DAY_LABELS[order[idx[idx.length - 1]]]}`;
  return idx.map((i) => DAY_LABELS[order[i]]).join(", ");
}

/** One line saying what a sequence does. */
function summary(sequence) {
  const steps = sequence.steps.length === 1 ? "1 step" : `${sequence.steps.length} steps`;
  const from = sequence.device_ids.map((id) => deviceNames.get(id) || `device ${id}`).join(", ");
  const w = sequence.window;
  const parts = [steps, `from ${from}`, `${daysText(w.weekdays)} ${w.start}–${w.end} (${sequence.time_zone})`];
  if (sequence.enrol_rule) {
    const r = sequence.enrol_rule;
    const what = [r.niche && `niche ${r.niche}`, r.status && `status ${r.status}`, r.journey && `journey ${r.journey}`,
      r.replied_to_campaign && "who replied to its campaign"].filter(Boolean);
    parts.push(`enrols ${what.length ? what.join(", ") : "every lead"} by itself`);
  }
  const exits = [];
  if (sequence.stop_on_reply) exits.push("a reply");
  for (const s of sequence.stop_statuses) exits.push(s);
  if (exits.length) parts.push(`stops on ${exits.join(", ")}`);
  return parts.join(" · ");
}

/** How long a step waits, for people. */
function delayText(step, first) {
  const bits = [];
  if (step.delay_days) bits.push(step.delay_days === 1 ? "1 day" : `${step.delay_days} days`);
  if (step.delay_hours) bits.push(step.delay_hours === 1 ? "1 hour" : `${step.delay_hours} hours`);
  const after = first || step.delay_from === "enrolment" ? "enrolment" : "the previous step";
  return bits.length ? `${bits.join(" and ")} after ${after}` : `as soon as the window allows after ${after}`;
}

let sequences = [];

/** Lists the sequences, by name, each a card. */
async function drawList() {
  const found = await act(() => api("GET", "/api/sequences"));
  if (!found) return;
  sequences = found;
  document.getElementById("no-sequences").hidden = sequences.length > 0;
  const open = new Set([...list.querySelectorAll(".sequence")].filter((c) => !c.querySelector(".report-panel").hidden).map((c) => c.dataset.id));
  stopRefreshes();
  list.replaceChildren(...sequences.map(card));
  for (const id of open) {
    const again = list.querySelector(`.sequence[data-id="${id}"]`);
    if (again) showReport(sequences.find((s) => String(s.id) === id), again);
  }
  for (const pick of form.querySelectorAll(".sequence-pick")) {
    const chosen = pick.value;
    pick.replaceChildren(el("option", { value: "" }, "no other sequence"),
      ...sequences.filter((s) => s.status !== "archived").map((s) => el("option", { value: String(s.id) }, s.name)));
    pick.value = chosen;
  }
}

function card(sequence) {
  const id = `sequence-${sequence.id}-name`;
  const heading = el("h2", { className: "name", id }, sequence.name, " ",
    el("span", { className: `badge status ${sequence.status}` }, sequence.status));
  const button = (cls, text, action) => {
    const b = el("button", { type: "button", className: cls }, text);
    b.setAttribute("aria-describedby", id);
    b.addEventListener("click", () => action(b));
    return b;
  };
  const item = el("li", { className: "card sequence" });
  item.dataset.id = sequence.id;
  const steps = el("ol", { className: "step-list" }, ...sequence.steps.map((step, i) =>
    el("li", {}, el("span", { className: "when" }, delayText(step, i === 0)), step.has_image ? el("span", { className: "badge" }, "with image") : "",
      el("span", { className: "text" }, step.message))));
  const actions = el("div", { className: "row actions" },
    button("report", "Report", () => toggle(item, ".report-panel", () => showReport(sequence, item))),
    button("preview", "Preview", () => toggle(item, ".preview-panel", () => showPreview(sequence, item))));
  if (sequence.status !== "archived") {
    actions.append(button("enrol", "Enrol leads", () => toggle(item, ".enrol-panel", () => showEnrol(sequence, item))),
      button("edit", "Edit", () => openForm(sequence)));
    if (sequence.status === "active") actions.append(button("pause", "Pause", (b) => setStatus(sequence, "paused", b)));
    else actions.append(button("resume", "Resume", (b) => setStatus(sequence, "active", b)));
    actions.append(button("archive danger", "Archive", (b) => archive(sequence, b)));
  }
  actions.append(button("delete danger", "Delete", (b) => remove(sequence, b)));
  item.append(heading, el("p", { className: "summary" }, summary(sequence)), steps, actions,
    el("section", { className: "panel report-panel", hidden: true }),
    el("section", { className: "panel preview-panel", hidden: true }),
    el("section", { className: "panel enrol-panel", hidden: true }));
  return item;
}

/** Opens the card's panel `selector` (closing its others), or closes it if open. */
function toggle(item, selector, open) {
  const panel = item.querySelector(selector);
  const wasOpen = !panel.hidden;
  for (const p of item.querySelectorAll(".panel")) p.hidden = true;
  if (selector !== ".report-panel" || wasOpen) stopRefresh(item.dataset.id);
  if (!wasOpen) open();
}

function announce(text) {
  saved.textContent = text;
  saved.hidden = false;
}

async function setStatus(sequence, status, button) {
  const done = await busy(button, () => api("PUT", `/api/sequences/${sequence.id}`, { status }));
  if (!done) return;
  announce(status === "paused" ? `Paused “${sequence.name}”: nothing more goes until you resume it.` : `Resumed “${sequence.name}”.`);
  await drawList();
}

async function archive(sequence, button) {
  if (!window.confirm(`Archive “${sequence.name}”? Its leads leave it and it cannot be resumed; its report stays.`)) return;
  if (!(await busy(button, () => api("PUT", `/api/sequences/${sequence.id}`, { status: "archived" })))) return;
  announce(`Archived “${sequence.name}”.`);
  await drawList();
}

async function remove(sequence, button) {
  if (!window.confirm(`Delete “${sequence.name}” and its report? Steps already on their way still go.`)) return;
  if ((await busy(button, () => api("DELETE", `/api/sequences/${sequence.id}`))) === undefined) return;
  if (form.elements.id.value === String(sequence.id)) closeForm();
  announce(`Deleted “${sequence.name}”.`);
  await drawList();
}

// ---- The report, refreshed while open, and the leads behind each number.

const refreshes = new Map();

function stopRefresh(id) {
  clearInterval(refreshes.get(id));
  refreshes.delete(id);
}

function stopRefreshes() {
  for (const id of [...refreshes.keys()]) stopRefresh(id);
}

function showReport(sequence, item) {
  const panel = item.querySelector(".report-panel");
  panel.hidden = false;
  if (!panel.firstChild) panel.append(el("p", { className: "hint" }, "Loading the report…"));
  const draw = async () => {
    if (panel.hidden || !document.body.contains(panel)) return stopRefresh(String(sequence.id));
    try {
      drawReport(sequence, panel, await api("GET", `/api/sequences/${sequence.id}/report`));
    } catch (err) {
      showError(err);
      stopRefresh(String(sequence.id));
    }
  };
  draw();
  stopRefresh(String(sequence.id));
  refreshes.set(String(sequence.id), setInterval(draw, REPORT_REFRESH_MS));
}

/** A number that opens the leads behind it (a plain number when there are none, or when no
 * filter picks them: `query` null). */
function cell(sequence, panel, count, label, query) {
  if (!count || query === null) return el("span", { className: `count${count ? "" : " zero"}` }, String(count));
  const b = el("button", { type: "button", className: "count link" }, String(count));
  b.setAttribute("aria-label", `${count} ${label}: show the leads`);
  b.dataset.query = query;
  b.addEventListener("click", () => drill(sequence, panel, label, query));
  return b;
}

function drawReport(sequence, panel, report) {
  const leads = el("dl", { className: "totals" });
  const total = (label, count, query) => leads.append(el("div", {}, el("dt", {}, label), el("dd", {}, cell(sequence, panel, count, label.toLowerCase(), query))));
  total("Enrolled", report.enrolled, "");
  total("Active", report.active, "status=active");
  total("Waiting", report.waiting, null);
  total("Completed", report.completed, "status=completed");
  total("Failed", report.failed, "status=failed");
  for (const [reason, count] of Object.entries(report.exited)) {
    total(`Left: ${reason.replace("status:", "status ").replace("by_hand", "by hand")}`, count, `status=exited&exit_reason=${encodeURIComponent(reason)}`);
  }
  const head = el("tr", {}, ...["Step", "Queued", "Sent", "Delivered", "Read", "Replied", "Failed"].map((h) => el("th", { scope: "col" }, h)));
  const rows = report.steps.map((s) => el("tr", {}, el("th", { scope: "row" }, String(s.position)),
    ...["queued", "sent", "delivered", "read", "replied", "failed"].map((outcome) =>
      el("td", { className: outcome }, cell(sequence, panel, s[outcome], `${outcome} at step ${s.position}`, `outcome_step=${s.position}&outcome=${outcome}`)))));
  const table = el("table", { className: "step-report" }, el("thead", {}, head), el("tbody", {}, ...rows));
  table.setAttribute("aria-label", `Steps of ${sequence.name}`);
  const parts = [el("h3", {}, "Report"), leads, el("div", { className: "table-wrap" }, table)];
  if (report.failed > 0 && sequence.status !== "archived") {
    const retry = el("button", { type: "button", className: "retry" }, `Retry ${report.failed} failed`);
    retry.addEventListener("click", async () => {
      const n = await busy(retry, () => api("POST", `/api/sequences/${sequence.id}/retry`));
      if (n !== undefined) announce(`${n} leads go on from the step that failed.`);
    });
    parts.push(el("div", { className: "row" }, retry));
  }
  const drilled = panel.querySelector(".drill");
  panel.replaceChildren(...parts);
  if (drilled) panel.append(drilled);
}

/** Lists the leads behind a report's number under the report. */
async function drill(sequence, panel, label, query, after, into) {
  const path = `/api/sequences/${sequence.id}/enrolments?limit=${PAGE}${query ? `&${query}` : ""}${after ? `&after=${after}` : ""}`;
  const page = await act(() => api("GET", path));
  if (!page) return;
  let box = into;
  if (!box) {
    box = el("section", { className: "drill" });
    box.append(el("h4", {}, `Leads: ${label}`), el("ul", { className: "drill-leads" }));
    const old = panel.querySelector(".drill");
    if (old) old.replaceWith(box);
    else panel.append(box);
  }
  box.querySelector(".more")?.remove();
  const ul = box.querySelector("ul");
  for (const e of page) {
    const where = e.status === "active" ? `waits for step ${e.next_step}${e.due_at ? `, due ${when(e.due_at)}` : ""}`
      : e.status === "exited" ? `left: ${e.exit_reason || "unknown"}` : e.status === "failed" ? `failed: ${e.exit_reason || "the send failed"}` : "completed";
    ul.append(el("li", {}, el("b", {}, e.lead_name || "(lead deleted)"), " ", el("span", { className: "phone" }, e.phone), " · ", where, ` · enrolled ${e.source === "hand" ? "by hand" : `by ${e.source}`}`));
  }
  if (!ul.children.length) ul.append(el("li", { className: "hint" }, "None."));
  if (page.length === PAGE) {
    const more = el("button", { type: "button", className: "more" }, "More");
    more.addEventListener("click", () => drill(sequence, panel, label, query, page[page.length - 1].id, box));
    box.append(more);
  }
}

// ---- The preview: when each step would go for a sample lead.

/** `value` of a datetime-local input for `date`, in the browser's clock. */
function localInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function showPreview(sequence, item) {
  const panel = item.querySelector(".preview-panel");
  panel.hidden = false;
  const start = el("input", { type: "datetime-local", name: "start", value: localInput(new Date()) });
  const name = el("input", { name: "sample", value: "Alex Sample", maxLength: 100 });
  const out = el("ol", { className: "preview-steps" });
  out.setAttribute("aria-live", "polite");
  const go = el("button", { type: "button", className: "show-preview" }, "Show");
  const run = () => busy(go, async () => {
    const at = start.value ? new Date(start.value) : new Date();
    const steps = await api("GET", `/api/sequences/${sequence.id}/preview?start=${encodeURIComponent(at.toISOString())}&name=${encodeURIComponent(name.value)}`);
    out.replaceChildren(...steps.map((s) => el("li", {},
      el("p", { className: "when" }, `Step ${s.position}: ${s.local} (${sequence.time_zone})`, el("span", { className: "hint" }, ` · ${when(s.at)} your time`)),
      el("ol", { className: "previews" }, ...s.renders.map((r) => el("li", {}, r))))));
  });
  go.addEventListener("click", run);
  panel.replaceChildren(el("h3", {}, "Preview"),
    el("p", { className: "hint" }, "When each step would go for a lead enrolled at this time, if every step goes out as soon as it is due, and three ways its message may read."),
    el("div", { className: "row" }, el("label", {}, "Enrolled at ", start), el("label", {}, "Sample name ", name), go), out);
  run();
}

// ---- Enrolling chosen leads.

function showEnrol(sequence, item) {
  const panel = item.querySelector(".enrol-panel");
  panel.hidden = false;
  const device = el("select", { name: "enrol_device" }, ...sequence.device_ids.map((id) => el("option", { value: String(id) }, deviceNames.get(id) || `device ${id}`)));
  const search = el("input", { type: "search", name: "enrol_search", placeholder: "name, number or notes" });
  const show = el("button", { type: "button", className: "show-leads" }, "Show leads");
  const leads = el("ul", { className: "enrol-leads" });
  const all = el("button", { type: "button", className: "select-all" }, "Select all shown");
  const enrol = el("button", { type: "button", className: "primary enrol-selected" }, "Enrol selected");
  const note = el("p", { className: "hint enrol-note", hidden: true });
  note.setAttribute("role", "status");
  const load = () => busy(show, async () => {
    const q = search.value.trim();
    const page = await api("GET", `/api/devices/${device.value}/leads?limit=${PAGE}${q ? `&q=${encodeURIComponent(q)}` : ""}`);
    leads.replaceChildren(...page.leads.map((lead) => el("li", {}, el("label", { className: "check" },
      el("input", { type: "checkbox", name: "lead", value: String(lead.id) }), ` ${lead.name} `, el("span", { className: "phone" }, lead.phone),
      el("span", { className: "hint" }, ` ${lead.niche || ""} · ${lead.status}`)))));
    if (!page.leads.length) leads.append(el("li", { className: "hint" }, "No leads found."));
    if (page.next_cursor) leads.append(el("li", { className: "hint" }, `The first ${PAGE} are shown; search to find others.`));
  });
  show.addEventListener("click", load);
  device.addEventListener("change", load);
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      load();
    }
  });
  all.addEventListener("click", () => {
    for (const box of leads.querySelectorAll('input[name="lead"]')) box.checked = true;
  });
  enrol.addEventListener("click", async () => {
    const ids = [...leads.querySelectorAll('input[name="lead"]:checked')].map((b) => Number(b.value));
    if (!ids.length) {
      showError(new Error("Choose at least one lead to enrol."));
      return;
    }
    const n = await busy(enrol, () => api("POST", `/api/sequences/${sequence.id}/enrolments`, { lead_ids: ids }));
    if (n === undefined) return;
    const skipped = ids.length - n;
    note.textContent = `${n} ${n === 1 ? "lead" : "leads"} enrolled${skipped ? `; ${skipped} already in it (or not a lead of its devices) were left as they are` : ""}.`;
    note.hidden = false;
    for (const box of leads.querySelectorAll('input[name="lead"]')) box.checked = false;
  });
  const file = el("input", { type: "file", name: "enrol_file", accept: ".csv,text/csv" });
  const upload = el("button", { type: "button", className: "enrol-file" }, "Enrol from file");
  const fileNote = el("div", { className: "hint enrol-file-note", hidden: true });
  fileNote.setAttribute("role", "status");
  upload.addEventListener("click", async () => {
    fileNote.hidden = true;
    if (!file.files.length) {
      showError(new Error("Choose a CSV file with a phone column first."));
      return;
    }
    const form = new FormData();
    form.append("file", file.files[0]);
    if (upload.disabled) return;
    upload.disabled = true;
    try {
      const done = (await callApi("POST", `/api/sequences/${sequence.id}/enrolments/import`, form)).results;
      const lines = [`${done.enrolled} ${done.enrolled === 1 ? "lead" : "leads"} enrolled; ${done.already_enrolled} in it already.`];
      if (done.not_leads_count) {
        lines.push(`${done.not_leads_count} ${done.not_leads_count === 1 ? "number is" : "numbers are"} no lead of its devices: ${done.not_leads.slice(0, 10).map((n) => `line ${n.row} (${n.phone})`).join(", ")}${done.not_leads_count > 10 ? ", …" : ""}. Add them as leads first.`);
      }
      fileNote.replaceChildren(...lines.map((line) => el("p", {}, line)));
      fileNote.hidden = false;
    } catch (err) {
      const rows = err.results && err.results.errors ? err.results.errors.slice(0, 10).map((e) => el("li", {}, `Line ${e.row}${e.column ? `, ${e.column}` : ""}: ${e.message}`)) : [];
      fileNote.replaceChildren(el("p", { className: "error" }, err.message), ...(rows.length ? [el("ul", {}, ...rows)] : []));
      fileNote.hidden = false;
    } finally {
      upload.disabled = false;
    }
  });
  panel.replaceChildren(el("h3", {}, "Enrol leads"),
    el("div", { className: "row" }, el("label", {}, "Device ", device), el("label", {}, "Search ", search), show),
    leads, el("div", { className: "row" }, all, enrol), note,
    el("p", { className: "hint" }, "Or a CSV file with a phone column (a leads export will do): the leads of its devices with those numbers are enrolled."),
    el("div", { className: "row" }, el("label", {}, "File ", file), upload), fileNote);
  load();
}

// ---- The form.

/** Adds a step to the form, filled from `step` when editing. */
function addStep(step) {
  const item = stepTemplate.content.firstElementChild.cloneNode(true);
  const f = (name) => item.querySelector(`[name="${name}"]`);
  if (step) {
    f("delay_days").value = step.delay_days;
    f("delay_hours").value = step.delay_hours;
    f("delay_from").value = step.delay_from;
    f("message").value = step.message;
    if (step.has_image) {
      item.dataset.keepImageOf = step.position;
      item.querySelector(".keep-image").hidden = false;
    }
  } else if (!stepsList.children.length) {
    f("delay_days").value = 0;
  } else {
    f("delay_days").value = 1;
  }
  const template = f("template");
  template.addEventListener("change", async () => {
    const note = item.querySelector(".template-note");
    note.hidden = true;
    if (!template.value) return;
    const chosen = await act(() => api("GET", `/api/templates/${template.value}`));
    if (!chosen) return;
    f("message").value = chosen.message;
    note.textContent = chosen.has_image ? `Message filled from “${chosen.name}”; its image goes with this step.` : `Message filled from “${chosen.name}”.`;
    note.hidden = false;
  });
  item.querySelector(".remove-step").addEventListener("click", () => {
    if (stepsList.children.length === 1) {
      showFormError(new Error("A sequence has at least one step."));
      return;
    }
    item.remove();
    numberSteps();
  });
  stepsList.append(item);
  numberSteps();
  return item;
}

/** Titles the steps in order; the first one's delay counts from enrolment. */
function numberSteps() {
  [...stepsList.children].forEach((item, i) => {
    item.querySelector(".step-title").textContent = `Step ${i + 1}`;
    const from = item.querySelector('[name="delay_from"]');
    from.closest("label").hidden = i === 0;
    for (const name of ["delay_days", "delay_hours", "delay_from", "template", "message", "image"]) {
      item.querySelector(`[name="${name}"]`).setAttribute("aria-label", `Step ${i + 1} ${name.replace("delay_", "delay ").replace("_", " ")}`);
    }
  });
}

/** Opens the form for `sequence`, or empty for a new one. */
function openForm(sequence) {
  form.reset();
  clearFormErrors();
  stepsList.replaceChildren();
  const f = form.elements;
  f.id.value = sequence ? sequence.id : "";
  f.name.value = sequence ? sequence.name : "";
  f.time_zone.value = sequence ? sequence.time_zone : zone();
  const w = sequence ? sequence.window : { start: "09:00", end: "18:00", weekdays: ["mon", "tue", "wed", "thu", "fri"] };
  f.window_start.value = w.start;
  f.window_end.value = w.end === "24:00" ? "23:59" : w.end;
  for (const box of form.querySelectorAll('input[name="weekday"]')) box.checked = w.weekdays.includes(box.value);
  for (const box of form.querySelectorAll('input[name="device"]')) {
    box.checked = sequence ? sequence.device_ids.includes(Number(box.value)) : form.querySelectorAll('input[name="device"]').length === 1;
  }
  const rule = sequence && sequence.enrol_rule;
  f.rule.checked = Boolean(rule);
  f.rule_niche.value = (rule && rule.niche) || "";
  f.rule_status.value = (rule && rule.status) || "";
  f.rule_journey.value = (rule && rule.journey) || "";
  f.rule_campaign.value = (rule && rule.replied_to_campaign) || "";
  f.stop_on_reply.checked = sequence ? sequence.stop_on_reply : true;
  for (const box of form.querySelectorAll('input[name="stop_status"]')) box.checked = sequence ? sequence.stop_statuses.includes(box.value) : ["converted", "lost"].includes(box.value);
  f.next_sequence_id.value = (sequence && sequence.next_sequence_id) || "";
  f.on_reply_sequence_id.value = (sequence && sequence.on_reply_sequence_id) || "";
  f.paused.checked = Boolean(sequence && sequence.status === "paused");
  if (sequence) for (const step of sequence.steps) addStep(step);
  else addStep(null);
  document.getElementById("form-title").textContent = sequence ? `Edit “${sequence.name}”` : "New sequence";
  saved.hidden = true;
  form.hidden = false;
  form.scrollIntoView({ block: "start" });
  f.name.focus({ preventScroll: true });
}

function closeForm() {
  form.hidden = true;
  form.reset();
  stepsList.replaceChildren();
}

function clearFormErrors() {
  document.getElementById("form-error").hidden = true;
  for (const line of form.querySelectorAll(".step .field-error")) line.remove();
  for (const field of form.querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
}

/** Shows `err` inside the step it names (`steps[1].message: …`), or above the buttons. */
function showFormError(err) {
  const raw = (err && err.raw) || (err && err.message) || String(err);
  const inStep = /^steps\[(\d+)\]\.([a-z_0-9]+): (.*)$/s.exec(raw);
  const item = inStep && stepsList.children[Number(inStep[1])];
  if (item) {
    const name = inStep[2] === "image_base64" ? "image" : inStep[2].replace("template_id", "template");
    const field = item.querySelector(`[name="${name}"]`) || item.querySelector('[name="message"]');
    field.setAttribute("aria-invalid", "true");
    const line = el("p", { className: "field-error" }, `Step ${Number(inStep[1]) + 1}: ${inStep[3].charAt(0).toUpperCase()}${inStep[3].slice(1)}`);
    line.setAttribute("role", "alert");
    field.closest("label").after(line);
    field.focus({ preventScroll: true });
    line.scrollIntoView({ block: "nearest" });
    return;
  }
  const line = document.getElementById("form-error");
  line.textContent = (err && err.message) || String(err);
  line.hidden = false;
  line.scrollIntoView({ block: "nearest" });
}

/** The form as the API's body (images read from their files). */
async function body() {
  const f = form.elements;
  const checked = (name) => [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((b) => b.value);
  const end = f.window_end.value === "23:59" ? "24:00" : f.window_end.value;
  const steps = [];
  for (const item of stepsList.children) {
    const v = (name) => item.querySelector(`[name="${name}"]`);
    const step = {
      message: v("message").value,
      delay_days: Number(v("delay_days").value || 0),
      delay_hours: Number(v("delay_hours").value || 0),
      delay_from: v("delay_from").value,
    };
    if (v("template").value) step.template_id = Number(v("template").value);
    if (v("image").files.length) step.image_base64 = await imageBase64(v("image"));
    else if (item.dataset.keepImageOf && v("keep_image").checked) step.keep_image_of = Number(item.dataset.keepImageOf);
    steps.push(step);
  }
  const rule = f.rule.checked ? {
    niche: f.rule_niche.value.trim() || null,
    status: f.rule_status.value || null,
    journey: f.rule_journey.value.trim() || null,
    replied_to_campaign: f.rule_campaign.value ? Number(f.rule_campaign.value) : null,
  } : null;
  return {
    name: f.name.value,
    time_zone: f.time_zone.value.trim(),
    window: { start: f.window_start.value, end, weekdays: checked("weekday") },
    device_ids: checked("device").map(Number),
    steps,
    enrol_rule: rule,
    stop_on_reply: f.stop_on_reply.checked,
    stop_statuses: checked("stop_status"),
    next_sequence_id: f.next_sequence_id.value ? Number(f.next_sequence_id.value) : null,
    on_reply_sequence_id: f.on_reply_sequence_id.value ? Number(f.on_reply_sequence_id.value) : null,
    status: f.paused.checked ? "paused" : "active",
  };
}

async function save(event) {
  event.preventDefault();
  clearFormErrors();
  const button = document.getElementById("save-sequence");
  if (button.disabled) return;
  const id = form.elements.id.value;
  button.disabled = true;
  let done;
  try {
    const sent = await body();
    if (!sent.window.weekdays.length) throw new Error("Days: choose at least one day steps may go on.");
    done = id ? await api("PUT", `/api/sequences/${id}`, sent) : await api("POST", "/api/sequences", sent);
  } catch (err) {
    showFormError(err);
    return;
  } finally {
    button.disabled = false;
  }
  closeForm();
  announce(`Saved “${done.name}”.${done.enrol_rule ? " Leads that match are enrolled within a minute." : " Enrol leads to start it."}`);
  await drawList();
}

form.addEventListener("submit", save);
document.getElementById("add-step").addEventListener("click", () => {
  const item = addStep(null);
  item.querySelector('[name="message"]').focus();
});
document.getElementById("new-sequence").addEventListener("click", () => openForm(null));
document.getElementById("cancel-edit").addEventListener("click", closeForm);
document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  for (const item of list.querySelectorAll(".sequence")) {
    const panel = item.querySelector(".report-panel");
    if (!panel.hidden) showReport(sequences.find((s) => String(s.id) === item.dataset.id), item);
  }
});
drawList();
