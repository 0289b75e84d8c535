// Clicking the map: a popup with the score, match probability and uncertainty at that point,
// exactly as POST /similarity gives them, for the PSM level the map is drawing there. Keyboard
// users press Enter on the focused map to inspect its centre.

import * as L from '/vendor/leaflet/leaflet-src.esm.js';
import { postJSON } from './api.js';
import { formatLatLon, formatNumber, formatPercent } from './format.js';
import { metadataOf } from './state.js';

function row(dl, field, label, value, text) {
  const dt = document.createElement('dt');
  dt.textContent = label;
  const dd = document.createElement('dd');
  dd.dataset.field = field;
  // The exact value rides along for anyone who wants more digits (and for the tests).
  dd.dataset.value = value === null ? '' : String(value);
  dd.textContent = text;
  dl.append(dt, dd);
}

function content(result, level) {
  const box = document.createElement('div');
  box.className = 'inspect';
  const where = document.createElement('p');
  where.className = 'inspect-where';
  where.textContent = formatLatLon(result.lat, result.lon);
  box.append(where);
  if (result.score === null) {
    const p = document.createElement('p');
    p.textContent = 'No data here: this place is outside the map’s coverage.';
    box.append(p);
    return box;
  }
  const dl = document.createElement('dl');
  row(dl, 'score', 'Score (−CSD)', result.score, formatNumber(result.score));
  row(dl, 'probability', 'Match probability', result.probability, formatPercent(result.probability));
  row(dl, 'uncertainty', 'Uncertainty (‖σ‖₁)', result.uncertainty, formatNumber(result.uncertainty));
  row(dl, 'level', 'PSM zoom', level, String(level));
  box.append(dl);
  return box;
}

function message(text) {
  const p = document.createElement('p');
  p.className = 'inspect';
  p.textContent = text;
  return p;
}

/**
 * @param {L.Map} map
 * @param {() => {queryId: string|null, state: object, level: number|null}} context
 */
export function bindInspect(map, context) {
  let seq = 0;
  const inspect = async (latlng) => {
    const { queryId, state, level } = context();
    const popup = L.popup({ maxWidth: 260 }).setLatLng(latlng);
    if (!queryId) {
      popup.setContent(message('Ask for a sound first: type a query or upload a sound.')).openOn(map);
      return;
    }
    const ll = latlng.wrap(); // the map repeats the world sideways; the server wants -180..180
    const lat = Math.max(-90, Math.min(90, ll.lat));
    popup.setContent(message('Scoring this place…')).openOn(map);
    const mine = (seq += 1);
    const body = { query: { id: queryId }, metadata: metadataOf(state), points: [[lat, ll.lng]] };
    if (level !== null) body.level = level;
    try {
      const res = await postJSON('/similarity', body, { what: 'Could not score this place' });
      if (mine !== seq) return; // a newer click won
      const el = content(res.results[0], res.level);
      el.dataset.query = res.query;
      el.dataset.lat = String(lat);
      el.dataset.lon = String(ll.lng);
      el.dataset.level = String(res.level);
      popup.setContent(el);
    } catch (err) {
      if (mine === seq) popup.setContent(message(err.message));
    }
  };
  map.on('click', (e) => inspect(e.latlng));
  map.getContainer().addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.target === map.getContainer()) inspect(map.getCenter());
  });
}
