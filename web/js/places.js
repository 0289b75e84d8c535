// "Top places": the best-matching cells in the current view (POST /similarity with a bbox),
// listed as buttons that fly the map there, and marked on the map with numbered circles.

import * as L from '/vendor/leaflet/leaflet-src.esm.js';
import { postJSON } from './api.js';
import { formatLatLon, formatNumber, formatPercent } from './format.js';
import { metadataOf } from './state.js';

const TOP_K = 8;
const $ = (id) => document.getElementById(id);

/** The part of the view the store covers, as [west, south, east, north], or null. */
function viewBbox(map, info) {
  const v = map.getBounds();
  let [w, s, e, n] = [v.getWest(), v.getSouth(), v.getEast(), v.getNorth()];
  const b = info.store.bounds;
  if (b) [w, s, e, n] = [Math.max(w, b[0]), Math.max(s, b[1]), Math.min(e, b[2]), Math.min(n, b[3])];
  [w, e] = [Math.max(w, -180), Math.min(e, 180)];
  [s, n] = [Math.max(s, -90), Math.min(n, 90)];
  return w < e && s < n ? [w, s, e, n] : null;
}

export class TopPlaces {
  constructor(map, info) {
    this.map = map;
    this.info = info;
    this.markers = L.layerGroup().addTo(map);
    this.abort = null;
    this.timer = null;
  }

  /** Refresh soon (pans and slider drags come in bursts; one request per burst). */
  schedule(ctx, delay = 400) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(ctx()), delay);
  }

  clear(text) {
    this.abort?.abort();
    this.markers.clearLayers();
    $('places').replaceChildren();
    $('places-help').textContent = text;
  }

  async refresh({ queryId, state, level }) {
    if (!queryId || !state.heat) {
      this.clear('Ask for a sound to see where it is most likely heard.');
      return;
    }
    const bbox = viewBbox(this.map, this.info);
    if (!bbox) {
      this.clear('The map has no data in this view: zoom out or pan to the coloured area.');
      return;
    }
    this.abort?.abort();
    this.abort = new AbortController();
    const body = { query: { id: queryId }, metadata: metadataOf(state), bbox, top_k: TOP_K };
    if (level !== null) body.level = level;
    let res;
    try {
      res = await postJSON('/similarity', body, {
        signal: this.abort.signal,
        what: 'Could not find the top places',
      });
    } catch (err) {
      if (err.name !== 'AbortError') this.clear(err.message);
      return;
    }
    this.render(res.results.filter((r) => r.score !== null), res.level);
  }

  render(results, level) {
    this.markers.clearLayers();
    const items = results.map((r, i) => {
      const li = document.createElement('li');
      const btn = document.createElement('button');
      btn.type = 'button';
      btn.className = 'place';
      btn.dataset.lat = String(r.lat);
      btn.dataset.lon = String(r.lon);
      const where = document.createElement('span');
      where.className = 'place-where';
      where.textContent = formatLatLon(r.lat, r.lon);
      const detail = document.createElement('span');
      detail.className = 'place-detail';
      detail.textContent = `score ${formatNumber(r.score)} · ${formatPercent(r.probability)}`;
      btn.append(where, detail);
      btn.addEventListener('click', () => this.flyTo(r));
      li.append(btn);
      L.circleMarker([r.lat, r.lon], { radius: 9, className: 'place-marker', interactive: false })
        .bindTooltip(String(i + 1), { permanent: true, direction: 'center', className: 'place-label' })
        .addTo(this.markers);
      return li;
    });
    $('places').replaceChildren(...items);
    $('places-help').textContent = items.length
      ? `Best ${items.length} matches in view (PSM zoom ${level}). Choose one to fly there.`
      : 'No place in view has data for this map.';
  }

  flyTo(r) {
    const zoom = Math.min(Math.max(this.map.getZoom() + 2, 8), this.map.getMaxZoom());
    this.map.flyTo([r.lat, r.lon], zoom);
  }
}
