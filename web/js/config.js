// Site configuration an operator may edit.
//
// The base map defaults to the store's own imagery served by this server (/imagery/...), which
// works offline. An external XYZ base map can be offered as well: set `externalBasemap` below
// AND start the server with SOUNDSCAPE_BASEMAP_ORIGIN set to that origin (e.g.
// "https://tile.openstreetmap.org"), because the page's Content Security Policy blocks images
// from any other host. Leave it null to keep every request on this origin.

export const config = {
  /** e.g. { name: 'OpenStreetMap', url: 'https://tile.openstreetmap.org/{z}/{x}/{y}.png',
   *         attribution: '© OpenStreetMap contributors', maxZoom: 19 } */
  externalBasemap: null,
};
