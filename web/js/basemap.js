// Base maps: the store's own imagery from our server (works offline), and optionally an
// external XYZ map configured in config.js.

import * as L from '/vendor/leaflet/leaflet-src.esm.js';
import { config } from './config.js';

/** [value, label] of the base maps on offer; 'none' is always there. */
export function baseChoices(info) {
  const choices = [];
  if (info.store.imagery) choices.push(['imagery', 'Store imagery (offline)']);
  if (config.externalBasemap) choices.push(['external', config.externalBasemap.name]);
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
  const ext = config.externalBasemap;
  if (ext) {
    layers.external = L.tileLayer(ext.url, { maxZoom: zmax, maxNativeZoom: ext.maxZoom, attribution: ext.attribution });
  }
  return layers;
}
