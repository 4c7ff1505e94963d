// The interactive API reference: Swagger UI (served from the binary) over /api/openapi.json.
// Calls made with "Try it out" go with the browser's session and this page's CSRF token, or
// with the API token given under "Authorize".
"use strict";

window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger",
  // Deep links put a link inside each operation's toggle button, which screen readers cannot
  // use (nested controls): the reference does without them.
  deepLinking: false,
  docExpansion: "list",
  defaultModelsExpandDepth: 0,
  // No call to a public validator: the reference works offline.
  validatorUrl: null,
  requestInterceptor: (request) => {
    request.headers["X-CSRF-Token"] = csrf;
    request.credentials = "same-origin";
    return request;
  },
});
