// Sets up Swagger UI on /docs (web/docs.html) over our own /openapi.json. A file, not an inline
// script: the page's Content-Security-Policy allows scripts from this origin only.
/* global SwaggerUIBundle */
window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  layout: 'BaseLayout',
  presets: [SwaggerUIBundle.presets.apis],
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  // No badge from validator.swagger.io: the page talks to this server only.
  validatorUrl: null,
});
