// "Top places": the best-matching cells in the current view (POST /similarity with a bbox; the
// server picks them on land inside the store's region), listed by place name as buttons that fly
// the map there, and marked on the map with numbered circles. When no cell centre is in view
// (zoomed in past the cells, or over the sea) the panel says what the view shows instead, so
// it agrees with the colours drawn.

import * as L from '/vendor/leaflet/leaflet-src.esm.js';
import { postJSON } from './api.js';
import { describePlace, formatLatLon, likelihoodWords, rankWords } from './format.js';
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
    this.onPick = () => {};
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
    $('places').dataset.mode = 'none';
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
    const signal = this.abort.signal;
    let res;
    try {
      res = await postJSON('/similarity', body, { signal, what: 'Could not find the top places' });
      const found = res.results.filter((r) => r.score !== null);
      if (found.length) {
        this.render(found, res.level);
        return;
      }
      // No ranked place in view: what is drawn at the view's centre?
      const c = this.map.getCenter().wrap();
      const centre = { query: body.query, metadata: body.metadata, points: [[c.lat, c.lng]] };
      if (level !== null) centre.level = level;
      res = await postJSON('/similarity', centre, { signal, what: 'Could not score this view' });
    } catch (err) {
      if (err.name !== 'AbortError') this.clear(err.message);
      return;
    }
    this.renderCentre(res.results[0], bbox);
  }

  /** The view holds no top place: describe its centre, consistent with the colours drawn. */
  renderCentre(r, bbox) {
    this.markers.clearLayers();
    if (!r || r.score === null) {
      $('places').replaceChildren();
      $('places-help').textContent =
        'Nothing in view has data for this map: zoom out or pan to the coloured area.';
      document.getElementById('places').dataset.mode = 'none';
      return;
    }
    const b = this.map.getBounds();
    const inside = b.getWest() >= bbox[0] - 1e-9 && b.getEast() <= bbox[2] + 1e-9
      && b.getSouth() >= bbox[1] - 1e-9 && b.getNorth() <= bbox[3] + 1e-9;
    const li = document.createElement('li');
    li.append(this.placeButton(r, 'The view’s centre'));
    $('places').replaceChildren(li);
    $('places').dataset.mode = 'centre';
    const zoomedIn = inside && r.percentile !== null;
    $('places-help').textContent = zoomedIn
      ? 'You are zoomed in closer than the map’s detail: the whole view is one or a few of its '
        + 'places. Zoom out to compare places.'
      : 'No place in view is ranked (top places are picked on land inside the map’s region). '
        + 'The view’s centre:';
  }

  /** A button that flies the map to a result, with its place name and rank in words. */
  placeButton(r, prefix = '') {
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'place';
    btn.dataset.lat = String(r.lat);
    btn.dataset.lon = String(r.lon);
    const where = document.createElement('span');
    where.className = 'place-where';
    const named = describePlace(r.place, r.lat, r.lon);
    where.textContent = prefix ? `${prefix}, ${named}` : named;
    const detail = document.createElement('span');
    detail.className = 'place-detail';
    const words = likelihoodWords(r.percentile);
    detail.textContent = words
      ? `${words}: ${rankWords(r.percentile)}`
      : formatLatLon(r.lat, r.lon);
    if (r.place) detail.title = formatLatLon(r.lat, r.lon);
    btn.append(where, detail);
    btn.addEventListener('click', () => this.flyTo(r));
    return btn;
  }

  render(results, level) {
    this.markers.clearLayers();
    $('places').dataset.mode = 'top';
    const items = results.map((r, i) => {
      const li = document.createElement('li');
      li.append(this.placeButton(r));
      L.circleMarker([r.lat, r.lon], { radius: 9, className: 'place-marker', interactive: false })
        .bindTooltip(String(i + 1), { permanent: true, direction: 'center', className: 'place-label' })
        .addTo(this.markers);
      return li;
    });
    $('places').replaceChildren(...items);
    $('places-help').textContent =
      `Best ${items.length} places on land in view (PSM zoom ${level}). Choose one to fly there.`;
  }

  flyTo(r) {
    this.onPick(r);
    const zoom = Math.min(Math.max(this.map.getZoom() + 2, 8), this.map.getMaxZoom());
    this.map.flyTo([r.lat, r.lon], zoom);
  }
}
