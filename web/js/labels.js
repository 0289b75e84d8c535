// Place names over the map: the most populous places in view (GET /places, GeoNames, offline),
// more of them as the view zooms in, drawn as small labels that never overlap: the largest
// place wins a spot, a smaller one whose label would collide is left out.

import * as L from '/vendor/leaflet/leaflet-src.esm.js';
import { getJSON } from './api.js';

// Pixels per label asked for: a 1280x800 view asks for about 80 places, of which the ones
// that fit without overlapping are drawn.
const AREA_PER_PLACE = 12000;
const MAX_PLACES = 120;
const GAP = 4; // pixels kept free around each label

/** The view as [west, south, east, north] in -180..180 (null when it cannot be asked for). */
function viewBbox(map) {
  const b = map.getBounds();
  const w = Math.max(-180, b.getWest());
  const e = Math.min(180, b.getEast());
  const s = Math.max(-90, b.getSouth());
  const n = Math.min(90, b.getNorth());
  return w < e && s < n ? [w, s, e, n] : null;
}

function overlaps(a, b) {
  return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
}

export class PlaceLabels {
  /** @param {L.Map} map (with a 'labels' pane) */
  constructor(map) {
    this.map = map;
    this.layer = L.layerGroup();
    this.on = false;
    this.abort = null;
    this.timer = null;
    this.seq = 0;
    map.on('moveend', () => this.schedule());
    map.on('zoomstart', () => this.layer.clearLayers());
  }

  setVisible(on) {
    this.on = on;
    if (on) {
      this.layer.addTo(this.map);
      this.schedule(0);
    } else {
      this.abort?.abort();
      this.layer.clearLayers();
      this.map.removeLayer(this.layer);
    }
  }

  schedule(delay = 250) {
    if (!this.on) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), delay);
  }

  async refresh() {
    const bbox = viewBbox(this.map);
    if (!bbox) return;
    const size = this.map.getSize();
    const limit = Math.max(8, Math.min(MAX_PLACES, Math.round((size.x * size.y) / AREA_PER_PLACE)));
    this.abort?.abort();
    this.abort = new AbortController();
    const mine = (this.seq += 1);
    let res;
    try {
      res = await getJSON(
        '/places',
        { bbox: bbox.map((v) => v.toFixed(5)).join(','), limit },
        { signal: this.abort.signal, what: 'Could not load place names' },
      );
    } catch (err) {
      // Names are a help, not the map: a failure leaves the map without them, quietly.
      return;
    }
    if (mine !== this.seq || !this.on) return;
    this.draw(res.places);
  }

  /** Labels for places (most populous first), leaving out any that would overlap. */
  draw(places) {
    this.layer.clearLayers();
    const size = this.map.getSize();
    const taken = [];
    // Measure with the labels' own font: one hidden label in the map container.
    const probe = document.createElement('span');
    probe.className = 'map-label-text map-label-probe';
    this.map.getContainer().append(probe);
    for (const [i, place] of places.entries()) {
      const p = this.map.latLngToContainerPoint([place.lat, place.lon]);
      if (p.x < 0 || p.y < 0 || p.x > size.x || p.y > size.y) continue;
      probe.textContent = place.name;
      const w = probe.offsetWidth;
      const h = probe.offsetHeight;
      // The dot sits at the place; the name to its right, centred on it vertically.
      const box = { x0: p.x - 4 - GAP, y0: p.y - h / 2 - GAP, x1: p.x + 8 + w + GAP, y1: p.y + h / 2 + GAP };
      if (box.x1 > size.x || taken.some((t) => overlaps(t, box))) continue;
      taken.push(box);
      const el = document.createElement('div');
      el.className = 'map-label-inner';
      const dot = document.createElement('span');
      dot.className = 'map-label-dot';
      const text = document.createElement('span');
      text.className = 'map-label-text';
      text.textContent = place.name;
      el.append(dot, text);
      el.dataset.rank = String(i);
      el.title = [place.name, place.admin1, place.country_code].filter(Boolean).join(', ');
      const icon = L.divIcon({ html: el, className: 'map-label', iconSize: null });
      L.marker([place.lat, place.lon], {
        icon,
        pane: 'labels',
        interactive: false,
        keyboard: false,
      }).addTo(this.layer);
    }
    probe.remove();
    this.map.getContainer().dataset.labels = String(taken.length);
  }
}
