// The leads page of one device: search, filters, add, edit, delete, CSV import and export, over
// the JSON API with the page's CSRF token.
"use strict";

const device = document.getElementById("leads-page").dataset.device;
const rows = document.querySelector("#leads tbody");
const more = document.getElementById("more");
const searchForm = document.getElementById("lead-search");
const exportLink = document.getElementById("export");
const editTemplate = document.getElementById("lead-edit");

/** Calls the API (common.js); resolves to the whole envelope. */
const api = callApi;

// ---- Listing ----------------------------------------------------------------------------------

let nextCursor = null;

/** The search form's filters as query parameters (empty ones left out). */
function filters() {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(searchForm)) {
    if (String(value).trim()) params.set(key, String(value).trim());
  }
  return params;
}

function cell(text, label, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  // On phones the table shows each lead as a card; the label names the field there.
  if (label) td.dataset.label = label;
  if (className) td.className = className;
  return td;
}

/** The Name cell: the owner's name for the lead, and under it the name WhatsApp shows for the
 * number (the phone's saved name, else the contact's own) when that differs. */
function nameCell(lead) {
  const td = cell("", "Name", "name");
  const names = document.createElement("span");
  names.textContent = lead.name;
  if (lead.whatsapp_name && lead.whatsapp_name !== lead.name) {
    const shown = document.createElement("small");
    shown.className = "whatsapp-name";
    shown.textContent = `on WhatsApp: ${lead.whatsapp_name}`;
    names.append(shown);
  }
  td.append(names);
  return td;
}

/** The table row of a lead, with its Edit and Delete buttons. */
function leadRow(lead) {
  const row = document.createElement("tr");
  row.className = "lead";
  row.dataset.id = lead.id;
  row.lead = lead;
  const status = cell(lead.status, "Status", `lead-status ${lead.status}`);
  row.append(
    nameCell(lead), cell(lead.phone, "Phone", "phone"), cell(lead.niche, "Niche"),
    cell(lead.journey, "Journey"), status, cell(lead.notes, "Notes"),
    cell(new Date(lead.updated_at).toLocaleString(), "Updated"),
  );
  const actions = document.createElement("td");
  actions.className = "actions";
  const edit = document.createElement("button");
  edit.type = "button";
  edit.className = "edit link";
  edit.textContent = "Edit";
  edit.addEventListener("click", () => row.replaceWith(editRow(lead)));
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "delete danger link";
  remove.textContent = "Delete";
  remove.addEventListener("click", async () => {
    if (!window.confirm(`Delete ${lead.name} (${lead.phone})?`)) return;
    if ((await act(() => api("DELETE", `/api/leads/${lead.id}`))) !== undefined) {
      row.remove();
      updateEmpty();
    }
  });
  actions.append(edit, remove);
  row.append(actions);
  return row;
}

/** The row that edits `lead` in place. */
function editRow(lead) {
  const row = editTemplate.content.firstElementChild.cloneNode(true);
  row.dataset.id = lead.id;
  const field = (name) => row.querySelector(`[name=${name}]`);
  for (const name of ["name", "phone", "niche", "journey", "status", "notes"]) field(name).value = lead[name] ?? "";
  row.querySelector(".cancel").addEventListener("click", () => row.replaceWith(leadRow(lead)));
  row.querySelector(".save").addEventListener("click", async () => {
    const changes = {};
    for (const name of ["name", "phone", "niche", "journey", "status", "notes"]) changes[name] = field(name).value;
    const saved = await act(() => api("PUT", `/api/leads/${lead.id}`, changes));
    if (saved) row.replaceWith(leadRow(saved.results));
  });
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter") row.querySelector(".save").click();
  });
  return row;
}

function updateEmpty() {
  document.getElementById("no-leads").hidden = rows.children.length > 0;
}

/** Loads the first page (`append` false) or the next one. */
async function load(append) {
  const params = filters();
  if (append && nextCursor !== null) params.set("cursor", nextCursor);
  const data = await act(() => api("GET", `/api/devices/${device}/leads?${params}`));
  if (!data) return;
  const page = data.results;
  const built = page.leads.map(leadRow);
  if (append) rows.append(...built);
  else rows.replaceChildren(...built);
  nextCursor = page.next_cursor;
  more.hidden = nextCursor === null;
  updateEmpty();
}

searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  exportLink.href = `/api/devices/${device}/leads/export?${filters()}`;
  load(false);
});
more.addEventListener("click", () => load(true));

// ---- Adding -----------------------------------------------------------------------------------

document.getElementById("add-lead").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const body = { device_id: Number(device) };
  for (const [key, value] of new FormData(form)) body[key] = String(value);
  const created = await act(() => api("POST", "/api/leads", body));
  if (created) {
    form.reset();
    await load(false);
  }
});

// ---- Import -----------------------------------------------------------------------------------

const importResult = document.getElementById("import-result");
const importErrors = document.getElementById("import-errors");

/** Lists a refused import's row errors. */
function showImportErrors(err) {
  document.getElementById("import-errors-message").textContent = err.message;
  const list = (err.results && err.results.errors) || [];
  importErrors.querySelector("tbody").replaceChildren(...list.map((e) => {
    const row = document.createElement("tr");
    row.className = "import-error";
    row.append(cell(e.row), cell(e.column || ""), cell(e.message));
    return row;
  }));
  importErrors.hidden = false;
}

document.getElementById("import-leads").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  importResult.hidden = true;
  importErrors.hidden = true;
  flash.hidden = true;
  try {
    const data = await api("POST", `/api/devices/${device}/leads/import`, new FormData(form));
    const ignored = data.results.ignored_columns;
    importResult.textContent = data.message + (ignored.length ? ` (ignored columns: ${ignored.join(", ")})` : "");
    importResult.hidden = false;
    form.reset();
    await load(false);
  } catch (err) {
    showImportErrors(err);
  }
});

load(false);
