// Base maps: the store's own imagery from our server (works offline), and optionally an
// external XYZ map that the operator configures on the server (SOUNDSCAPE_BASEMAP_URL; the
// server also lets its origin through the page's Content Security Policy).

import * as L from '/vendor/leaflet/leaflet-src.esm.js';

/** [value, label] of the base maps on offer; 'none' is always there. */
export function baseChoices(info) {
  const choices = [];
  if (info.store.imagery) choices.push(['imagery', 'Store imagery (offline)']);
  if (info.basemap) choices.push(['external', info.basemap.name]);
  choices.push(['none', 'None']);
  return choices;
}

/** Leaflet layers by base-map value ('none' has none). */
export function makeBaseLayers(info) {
  const [zmin, zmax] = info.zoom_range;
  const layers = {};
  if (info.store.imagery) {
    layers.imagery = L.tileLayer('/imagery/{z}/{x}/{y}.png', {
      minZoom: zmin,
      maxZoom: zmax,
      attribution: 'Imagery: the store’s source',
    });
  }
  const ext = info.basemap;
  if (ext) {
    layers.external = L.tileLayer(ext.url, {
      maxZoom: zmax,
      maxNativeZoom: ext.max_zoom,
      attribution: ext.attribution,
    });
  }
  return layers;
}
