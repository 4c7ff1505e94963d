// The Templates page: the user's saved messages, each with "Preview 3 variations", "Edit" and
// "Delete", and one form to write a new one or change one. A refused save shows the API's error
// under the field it names; for a mistake in the message, the spot it points at is quoted and
// selected in the text, since "position 57" alone is hard to find.
"use strict";

const form = document.getElementById("template-form");
const list = document.getElementById("templates");
const saved = document.getElementById("saved");
/** Where an error naming each field shows; anything else shows above the form's buttons. */
const FIELD_ERRORS = { Name: "name-error", Message: "message-error", Image: "image-error", "Image base64": "image-error" };

/** Calls the API (common.js); resolves to the envelope's `results`. */
const api = async (method, path, body) => (await callApi(method, path, body)).results;

/** The browser's time zone, whose hour picks `{greeting}` in previews. */
const zone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

/** Three renders of `message` drawn into `target`; resolves to false (error shown) on a mistake. */
async function drawPreview(message, target, onError) {
  try {
    const result = await api("POST", "/api/templates/preview", { message, time_zone: zone(), count: 3 });
    target.replaceChildren(...result.renders.map((text) => el("li", {}, text)));
    target.hidden = false;
    return true;
  } catch (err) {
    target.hidden = true;
    onError(err);
    return false;
  }
}

/** Lists the templates, by name, each a card with its message and buttons. */
async function drawList() {
  const templates = await act(() => api("GET", "/api/templates"));
  if (!templates) return;
  document.getElementById("no-templates").hidden = templates.length > 0;
  list.replaceChildren(...templates.map(card));
}

function card(template) {
  const previews = el("ol", { className: "previews", hidden: true });
  previews.setAttribute("aria-label", `Three renders of ${template.name}`);
  const heading = el("h2", { className: "name" }, template.name);
  if (template.has_image) heading.append(" ", el("span", { className: "badge" }, "with image"));
  const preview = el("button", { type: "button", className: "preview" }, "Preview 3 variations");
  preview.addEventListener("click", () => busy(preview, () => drawPreview(template.message, previews, showError)));
  const edit = el("button", { type: "button", className: "edit" }, "Edit");
  edit.addEventListener("click", () => openForm(template));
  const remove = el("button", { type: "button", className: "delete danger" }, "Delete");
  remove.addEventListener("click", () => removeTemplate(template, remove));
  const use = el("a", { className: "button use", href: `/campaigns?template=${template.id}` }, "Start a campaign");
  for (const button of [preview, edit, remove, use]) button.setAttribute("aria-describedby", `template-${template.id}-name`);
  heading.id = `template-${template.id}-name`;
  const item = el("li", { className: "card template" }, heading, el("p", { className: "message" }, template.message),
    el("div", { className: "row actions" }, preview, use, edit, remove), previews);
  item.dataset.id = template.id;
  return item;
}

async function removeTemplate(template, button) {
  if (!window.confirm(`Delete the template “${template.name}”? Campaigns made from it keep their text.`)) return;
  if (await busy(button, () => api("DELETE", `/api/templates/${template.id}`)) === undefined) return;
  if (form.elements.id.value === String(template.id)) closeForm();
  announce(`Deleted “${template.name}”.`);
  await drawList();
}

function announce(text) {
  saved.textContent = text;
  saved.hidden = false;
}

/** Opens the form for `template`, or empty for a new one. */
function openForm(template) {
  form.reset();
  clearFieldErrors();
  const f = form.elements;
  f.id.value = template ? template.id : "";
  f.name.value = template ? template.name : "";
  f.message.value = template ? template.message : "";
  document.getElementById("form-title").textContent = template ? `Edit “${template.name}”` : "New template";
  document.getElementById("image-note").hidden = !(template && template.has_image);
  document.getElementById("remove-image-box").hidden = !(template && template.has_image);
  document.getElementById("form-previews").hidden = true;
  saved.hidden = true;
  form.hidden = false;
  form.scrollIntoView({ block: "start" });
  f.name.focus({ preventScroll: true });
}

function closeForm() {
  form.hidden = true;
  form.reset();
}

function clearFieldErrors() {
  for (const id of [...new Set(Object.values(FIELD_ERRORS)), "form-error"]) document.getElementById(id).hidden = true;
  for (const field of form.querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
}

/** Shows `err` under the field it names (`Message: …`), or above the buttons. */
function showFieldError(err) {
  const message = err && err.message ? err.message : String(err);
  const match = /^([A-Z][a-z]*(?: base64)?): (.*)$/s.exec(message);
  const target = match && FIELD_ERRORS[match[1]];
  if (!target) {
    const line = document.getElementById("form-error");
    line.textContent = message;
    line.hidden = false;
    return;
  }
  const box = document.getElementById(target);
  const field = form.elements[target.replace("-error", "")];
  field.setAttribute("aria-invalid", "true");
  if (target === "message-error") {
    box.querySelector(".what").textContent = match[2];
    pointAt(field, box.querySelector(".where"), match[2]);
  } else {
    box.textContent = match[2];
  }
  box.hidden = false;
  field.focus({ preventScroll: true });
  box.scrollIntoView({ block: "nearest" });
}

/**
 * Quotes the part of the message an error's "position N" points at (characters counted from 1
 * in the trimmed text, as the server counts them) with that character marked, and selects it in
 * the text area.
 */
function pointAt(field, quote, error) {
  const position = /position (\d+)/.exec(error);
  quote.hidden = true;
  if (!position) return;
  const value = field.value;
  const chars = Array.from(value.trim());
  const index = Number(position[1]) - 1;
  if (index < 0 || index >= chars.length) return;
  const before = chars.slice(Math.max(0, index - 20), index).join("");
  const after = chars.slice(index + 1, index + 21).join("");
  quote.replaceChildren(`${index > 20 ? "…" : ""}${before}`, el("mark", {}, chars[index]),
    `${after}${index + 21 < chars.length ? "…" : ""}`);
  quote.hidden = false;
  // Text areas count UTF-16 units from the untrimmed start.
  const start = value.length - value.trimStart().length + chars.slice(0, index).join("").length;
  field.setSelectionRange(start, start + chars[index].length);
}

/** Runs `action` with `button` busy; its failure shows next to the field it names. */
async function inForm(button, action) {
  clearFieldErrors();
  if (button.disabled) return undefined;
  button.disabled = true;
  try {
    return await action();
  } catch (err) {
    showFieldError(err);
    return undefined;
  } finally {
    button.disabled = false;
  }
}

async function save(event) {
  event.preventDefault();
  const f = form.elements;
  const body = { name: f.name.value, message: f.message.value };
  const id = f.id.value;
  const done = await inForm(document.getElementById("save-template"), async () => {
    if (f.image.files.length) body.image_base64 = await imageBase64(f.image);
    else if (id && f.remove_image.checked) body.image_base64 = "";
    return id ? api("PUT", `/api/templates/${id}`, body) : api("POST", "/api/templates", body);
  });
  if (!done) return;
  closeForm();
  announce(`Saved “${done.name}”.`);
  await drawList();
}

form.addEventListener("submit", save);
document.getElementById("preview-form").addEventListener("click", (event) => {
  const previews = document.getElementById("form-previews");
  // The error goes under the message, like a refused save's.
  inForm(event.currentTarget, () => drawPreview(form.elements.message.value, previews, (err) => { throw err; }));
});
document.getElementById("new-template").addEventListener("click", () => openForm(null));
document.getElementById("cancel-edit").addEventListener("click", closeForm);
drawList();
