// What every dashboard page's script shares, loaded before it: calls to the JSON API with the
// page's CSRF token, and the flash bar that shows what went wrong.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const flash = document.getElementById("flash");

/** An Error carrying the server's message, the HTTP status and its envelope's `results`. */
class ApiFailure extends Error {
  constructor(message, status, results) {
    super(message);
    this.status = status;
    this.results = results;
  }
}

/**
 * Calls the JSON API and resolves to its whole envelope (`message`, `results`). `body` goes as
 * JSON, or as it is when it is FormData (an upload). A 401 sends the browser to the login page;
 * any other failure throws an ApiFailure with the server's message.
 */
async function callApi(method, path, body) {
  const init = { method, headers: { "X-CSRF-Token": csrf, Accept: "application/json" }, credentials: "same-origin" };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    window.location.assign("/login");
    throw new Error("logged out");
  }
  const data = await response.json().catch(() => ({ message: response.statusText }));
  if (!response.ok) {
    throw new ApiFailure(data.message || `request failed (${response.status})`, response.status, data.results);
  }
  return data;
}

/** Shows `err`'s message in the flash bar. */
function showError(err) {
  flash.textContent = err.message;
  flash.hidden = false;
}

/** Hides the flash bar. */
function clearError() {
  flash.hidden = true;
}

/** Runs `action`, showing its error in the flash bar; resolves to undefined on failure. */
async function act(action) {
  try {
    const result = await action();
    clearError();
    return result;
  } catch (err) {
    showError(err);
    return undefined;
  }
}
