"use strict";
// Starts Swagger UI on /docs from the gateway's own copy of its assets; a file, not inline code (the CSP forbids that).
window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", location.href).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
