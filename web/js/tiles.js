// Tile URL templates for the heatmap, uncertainty and base layers, and the zoom limits that keep
// Leaflet from asking for tiles the server does not have.

import { queryString } from './api.js';
import { levelZoomRange } from './levels.js';
import { compareParams, heatScale, metadataParams } from './state.js';

/** Metadata, level and colour parameters shared by heatmap and uncertainty tiles. */
function commonParams(state) {
  return { ...metadataParams(state), level: state.level === 'auto' ? null : state.level };
}

/** Heatmap template for a registered query id under `state` (hour overridable: time-lapse). */
export function heatmapUrl(queryId, state, hour = state.hour) {
  const params = {
    ...commonParams({ ...state, hour }),
    scale: heatScale(state),
    colormap: state.colormap,
  };
  return `/tiles/${encodeURIComponent(queryId)}/{z}/{x}/{y}.png${queryString(params)}`;
}

/**
 * Compare template: score(A) − score(B) for registered query ids, A under `state` (hour
 * overridable: time-lapse) and B under A's metadata with the state's b_* overrides. The
 * server picks the diverging ramp (a sequential colour map would hide the sign).
 */
export function compareUrl(idA, idB, state, hour = state.hour) {
  const params = { ...commonParams({ ...state, hour }), ...compareParams(state) };
  const path = [idA, idB].map(encodeURIComponent).join('/');
  return `/compare/${path}/{z}/{x}/{y}.png${queryString(params)}`;
}

/** Uncertainty template under `state`. */
export function uncertaintyUrl(state, hour = state.hour) {
  return `/uncertainty/{z}/{x}/{y}.png${queryString(commonParams({ ...state, hour }))}`;
}

/**
 * The batch route that prepares every tile of a layer's view for the given hours in one server
 * job (POST /views/...), from the layer's own tile template: the same query and parameters, the
 * view's bounds [west, south, east, north] and web zoom. Null for layers it does not serve
 * (compare tiles).
 */
export function viewUrl(template, z, bounds, hours) {
  if (!template.includes('/{z}/{x}/{y}.png')) return null;
  let path = template.replace('/{z}/{x}/{y}.png', `/${z}`);
  if (path.startsWith('/tiles/')) path = `/views${path}`;
  else if (path.startsWith('/uncertainty/')) path = `/views${path}`;
  else return null;
  const [base, query = ''] = path.split('?');
  const params = new URLSearchParams(query);
  params.delete('hour');
  params.set('bbox', bounds.map((v) => v.toFixed(6)).join(','));
  params.set('hours', hours.join(','));
  return `${base}?${params.toString()}`;
}

/**
 * Leaflet zoom options for the level setting: with a fixed PSM level, tiles exist only between
 * its zooms; beyond its finest, Leaflet magnifies the finest tiles instead of asking for more.
 */
export function zoomOptions(info, state) {
  const [zmin, zmax] = info.zoom_range;
  if (state.level === 'auto') return { minZoom: zmin, maxZoom: zmax, maxNativeZoom: zmax };
  const level = info.store.levels.find((lv) => String(lv.psm_zoom) === state.level);
  const [lo, hi] = levelZoomRange(level);
  return { minZoom: Math.max(lo, zmin), maxZoom: zmax, maxNativeZoom: Math.min(hi, zmax) };
}

/** Leaflet bounds of the store ([west, south, east, north] in /api/info). */
export function storeBounds(info) {
  const b = info.store.bounds;
  return b ? [[b[1], b[0]], [b[3], b[2]]] : null;
}
