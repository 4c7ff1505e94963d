// The campaign form's "Start from a template": choosing one fills the message with the
// template's text and says whether its image goes with the campaign. Saving sends the template's
// id, so the server copies its image (the text sent is the form's, which may have been changed
// since). Loaded before campaigns.js, which resets the picker and asks which template is chosen.
"use strict";

const templatePicker = (() => {
  const select = document.getElementById("template-picker");
  const note = document.getElementById("template-note");
  // No templates yet: the form only links to the Templates page.
  if (!select) return { reset() {}, chosen() { return undefined; }, choose() {} };

  select.addEventListener("change", () => {
    const option = select.selectedOptions[0];
    if (!option || !option.value) {
      note.hidden = true;
      return;
    }
    document.querySelector("#campaign-form [name=message]").value = option.dataset.message;
    note.textContent = option.dataset.image === "true"
      ? `Message filled from “${option.dataset.name}”. Its image will be sent with the campaign, unless you choose another image below.`
      : `Message filled from “${option.dataset.name}”. It has no image, so the campaign is sent without one unless you choose an image below.`;
    note.hidden = false;
  });

  return {
    /** Back to "None", as a form just opened is. */
    reset() {
      select.value = "";
      note.hidden = true;
    },
    /** Chooses the template `id` (a string), as if picked, when it is one of the user's. */
    choose(id) {
      select.value = id;
      if (select.value === id) select.dispatchEvent(new Event("change"));
    },
    /** The id of the template chosen, or undefined. */
    chosen() {
      return select.value ? Number(select.value) : undefined;
    },
  };
})();
