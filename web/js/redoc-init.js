// Sets up ReDoc on /redoc (web/redoc.html) over our own /openapi.json. A file, not an inline
// script: the page's Content-Security-Policy allows scripts from this origin only.
/* global Redoc */

// ReDoc's sidebar credit ("API docs by Redocly") is an <img> from cdn.redoc.ly, with no option
// to leave it out. The page talks to this server only: an image source on another origin is
// dropped before the browser fetches it (and before the CSP would have to refuse it, loudly).
// ReDoc's React sets the `src` property; setAttribute is covered too.
const ours = (value) => {
  const url = new URL(String(value), document.baseURI);
  return url.origin === window.location.origin || url.protocol === 'data:' || url.protocol === 'blob:';
};
const src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, 'src');
Object.defineProperty(HTMLImageElement.prototype, 'src', {
  ...src,
  set(value) {
    if (ours(value)) src.set.call(this, value);
  },
});
const setAttribute = Element.prototype.setAttribute;
Element.prototype.setAttribute = function (name, value) {
  if (this instanceof HTMLImageElement && String(name).toLowerCase() === 'src' && !ours(value)) return;
  setAttribute.call(this, name, value);
};

Redoc.init(
  '/openapi.json',
  {
    // System fonts: ReDoc's defaults (Roboto, Montserrat) would come from a font host.
    theme: {
      typography: {
        fontFamily: 'system-ui, sans-serif',
        headings: { fontFamily: 'system-ui, sans-serif' },
      },
    },
  },
  document.getElementById('redoc'),
);
