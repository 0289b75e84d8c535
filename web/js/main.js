// The soundscape map page: reads /api/info, restores the state from the URL, builds the map and
// keeps layers, legend, top places and URL in step with the state.

import * as L from '/vendor/leaflet/leaflet-src.esm.js';
import { getJSON, getQuery, registerText } from './api.js';
import { baseChoices, makeBaseLayers } from './basemap.js';
import { BufferedTileLayer } from './buffered-layer.js';
import { bindCompare, buildCompare, describeSides, queryIdB, reflectCompare } from './compare.js';
import { bindControls, buildControls, reflectControls } from './controls.js';
import { formatHour, MONTHS } from './format.js';
import { bindInspect } from './inspect.js';
import { Legend } from './legend.js';
import { PlaceLabels } from './labels.js';
import { fadeCap, levelAt } from './levels.js';
import { TopPlaces } from './places.js';
import { bindQueryInputs, reflectQuery, showHint } from './query.js';
import { bindPlaceSearch } from './search.js';
import { compareActive, fromUrl, Store, toUrl } from './state.js';
import { clearError, initStatus, showError } from './status.js';
import {
  compareUrl,
  heatmapUrl,
  storeBounds,
  uncertaintyUrl,
  viewUrl,
  zoomOptions,
} from './tiles.js';
import { TimeLapse } from './timelapse.js';

const HEAT_KEYS = [
  'month', 'hour', 'asource', 'tsource', 'location', 'level', 'scale', 'colormap', 'heat',
  'sameScale', 'playing', 'compare', 'queryB', 'bHour', 'bMonth',
];
const UNC_KEYS = ['month', 'hour', 'asource', 'tsource', 'location', 'level', 'unc'];
const PLACE_KEYS = ['month', 'hour', 'asource', 'tsource', 'location', 'level', 'heat', 'view'];

const $ = (id) => document.getElementById(id);

/** "in July at 06:00, audio like Radio Aporee" — the metadata part of the active query line. */
function describeMetadata(s, info) {
  const parts = [];
  if (s.month !== null) parts.push(`in ${MONTHS[s.month - 1]}`);
  if (s.hour !== null) parts.push(`at ${formatHour(s.hour)}`);
  if (s.asource !== null) {
    // The collection's own name ("Radio Aporee: field recordings…" -> "Radio Aporee").
    const help = info.vocabulary.source_help?.audio?.[s.asource] ?? '';
    parts.push(`audio like ${help.includes(':') ? help.split(':')[0] : s.asource}`);
  }
  if (s.tsource !== null) parts.push(`captions like ${s.tsource}`);
  if (!s.location) parts.push('ignoring location');
  if (compareActive(s)) parts.push(`compared with B: ${describeSides(s).b}`);
  return parts.join(', ');
}

// Phones, upright or on their side: the map fills the screen and the controls are a sheet over
// it, opened and closed by the Controls button (map.css uses the same media query).
const COMPACT = '(max-width: 700px), (max-height: 500px)';

/** The controls sheet: {compact(), close()}; it follows rotations between the two layouts. */
function bindPanelToggle() {
  const button = $('panel-toggle');
  const panel = $('panel');
  const media = window.matchMedia(COMPACT);
  const set = (open) => {
    panel.classList.toggle('is-collapsed', !open);
    button.setAttribute('aria-expanded', String(open));
    document.body.dataset.panel = open ? 'open' : 'closed';
  };
  // On a phone the map comes first; the controls slide up on demand.
  set(!media.matches);
  // Rotating (or resizing) into the side-by-side layout shows the controls, which then have
  // no button; into the phone layout the map comes first again.
  media.addEventListener('change', () => set(!media.matches));
  button.addEventListener('click', () => set(panel.classList.contains('is-collapsed')));
  return {
    compact: () => media.matches,
    /** Close the sheet on a phone (a map was asked for: show it). */
    reveal: () => {
      if (media.matches) set(false);
    },
  };
}

async function boot() {
  initStatus();
  let info;
  try {
    info = await getJSON('/api/info', {}, { what: 'Could not reach the map service' });
  } catch (err) {
    showError(err.message);
    return;
  }
  const choices = baseChoices(info);
  buildControls(info, choices);
  buildCompare(info);
  const initial = fromUrl(window.location.search, info, choices.map((c) => c[0]));
  const store = new Store(initial);
  const levels = info.store.levels;
  const zooms = levels.map((lv) => lv.psm_zoom).join(', ');
  $('model-info').textContent = `Model ${info.model.id} (${info.model.config}); PSM zooms ${zooms}.`;

  const [zmin, zmax] = info.zoom_range;
  const map = L.map('map', { minZoom: zmin, maxZoom: zmax, worldCopyJump: true, keyboard: true });
  map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
  // The error banner and the panel change the map's size without a window resize.
  new ResizeObserver(() => map.invalidateSize()).observe(map.getContainer());
  // Panes order the layers: base tiles (200) < heatmap < uncertainty < markers and popups.
  map.createPane('heatmap').style.zIndex = '250';
  map.createPane('uncertainty').style.zIndex = '260';
  // Place names over the colours, under the top places' rings (overlay pane, 400).
  const labelPane = map.createPane('labels');
  labelPane.style.zIndex = '350';
  labelPane.style.pointerEvents = 'none';
  const bounds = storeBounds(info);
  if (initial.view) map.setView([initial.view.lat, initial.view.lon], initial.view.zoom);
  else if (bounds) map.fitBounds(bounds);
  else map.setView([0, 0], zmin);

  let tileErrorTimer = null;
  const onTileError = () => {
    // One message for a burst of failed tiles.
    clearTimeout(tileErrorTimer);
    tileErrorTimer = setTimeout(
      () => showError('Some map tiles could not be loaded: the server may be busy. Pan or change a setting to retry.'),
      300,
    );
  };
  const heat = new BufferedTileLayer(map, { pane: 'heatmap', className: 'heatmap-layer', bounds, onTileError });
  const unc = new BufferedTileLayer(map, { pane: 'uncertainty', className: 'uncertainty-layer', bounds, onTileError });
  const bases = makeBaseLayers(info);
  const legend = new Legend();
  const places = new TopPlaces(map, info);
  const labels = new PlaceLabels(map);
  const sheet = bindPanelToggle();

  let queryId = null; // the registered id of the active query (null until known)
  let queryBId = null; // B's registered id while the map shows A − B (null otherwise)
  let querySeq = 0;
  const context = () => {
    const s = store.get();
    const lv = levelAt(info, s.level, map.getZoom());
    return { queryId, state: s, level: lv ? lv.psm_zoom : null };
  };
  // The heatmap layer's template: A − B in compare mode, else A's heatmap.
  const heatUrl = (s, hour = s.hour) =>
    queryBId ? compareUrl(queryId, queryBId, s, hour) : heatmapUrl(queryId, s, hour);

  // Zoomed in past the drawn level's detail, the layers fade (levels.js, fadeCap) so the
  // imagery and place names show through; the Layers card says so.
  const fade = () => {
    const s = store.get();
    if (!s.fade) return 1;
    return fadeCap(levelAt(info, s.level, map.getZoom()), map.getZoom());
  };
  function applyOpacity() {
    const s = store.get();
    const cap = fade();
    heat.setOpacity(Math.min(s.heatOpacity, cap));
    unc.setOpacity(Math.min(s.uncOpacity, cap));
    const faded = cap < 1 && s.heatOpacity > cap && s.heat;
    $('heat-fade-note').textContent = faded
      ? `Faded to ${Math.round(cap * 100)} % at this zoom: you are closer than the map’s `
        + 'detail, so the imagery and place names show through.'
      : '';
    document.body.dataset.heatFade = String(cap);
  }

  let heatSeq = 0;
  async function refreshHeat() {
    const mine = (heatSeq += 1);
    const s = store.get();
    if (!queryId || !s.heat) {
      heat.hide();
      legend.hideHeatmap();
      return;
    }
    const id = queryId;
    let idB = null;
    try {
      if (compareActive(s)) {
        idB = await queryIdB(s, id);
        if (mine !== heatSeq) return;
      }
      // The legend comes first: the server computes the map's value range once, for the
      // legend, and every tile then finds it cached.
      if (idB) await legend.showCompare(id, idB, s, describeSides(s));
      else await legend.showHeatmap(id, s);
    } catch (err) {
      if (err.name === 'AbortError') return;
      showError(err.message);
      // Without B's id there is no difference map to draw: keep the map as it was.
      if (compareActive(s) && !idB) return;
    }
    if (mine !== heatSeq || id !== queryId) return; // something newer is on its way
    const now = store.get();
    queryBId = idB;
    applyOpacity();
    heat.show(heatUrl(now), zoomOptions(info, now));
  }

  function refreshUnc() {
    const s = store.get();
    if (!s.unc) {
      unc.hide();
      legend.hideUncertainty();
      return;
    }
    applyOpacity();
    unc.show(uncertaintyUrl(s), zoomOptions(info, s));
    legend.showUncertainty(s).catch((err) => {
      if (err.name !== 'AbortError') showError(err.message);
    });
  }

  async function resolveQuery() {
    const s = store.get();
    const mine = (querySeq += 1);
    queryId = null;
    showHint(null);
    const q = s.query;
    if (!q) {
      reflectQuery(s, '');
      await refreshHeat();
      places.schedule(context, 0);
      return;
    }
    if (q.kind === 'audio') {
      // A shared link may name a sound the server no longer knows (uploaded before a restart):
      // ask before drawing, so the map shows one clear message instead of broken tiles.
      let known;
      try {
        known = await getQuery(q.id, 'Could not load this sound');
      } catch (err) {
        if (mine !== querySeq) return;
        heat.hide();
        legend.hideHeatmap();
        reflectQuery(s, '');
        showError(
          err.status === 404
            ? 'The server does not know this sound any more (it may have restarted since the ' +
                'link was made). Upload the sound again to map it.'
            : err.message,
        );
        return;
      }
      if (mine !== querySeq) return;
      queryId = q.id;
      showHint(known.hint, known.familiarity);
    } else {
      reflectQuery(s, 'mapping…');
      try {
        const res = await registerText(q.text);
        if (mine !== querySeq) return;
        queryId = res.id;
        showHint(res.hint, res.familiarity);
      } catch (err) {
        if (mine !== querySeq) return;
        heat.hide();
        legend.hideHeatmap();
        reflectQuery(s, '');
        showError(err.message);
        return;
      }
    }
    document.body.dataset.queryId = queryId;
    reflectQuery(store.get(), describeMetadata(store.get(), info));
    await refreshHeat();
    places.schedule(context, 0);
  }

  function setBase(name) {
    for (const [key, layer] of Object.entries(bases)) {
      if (key === name) layer.addTo(map);
      else map.removeLayer(layer);
    }
  }

  function reflectClock(s) {
    const parts = [];
    if (s.month !== null) parts.push(MONTHS[s.month - 1].slice(0, 3));
    if (s.hour !== null) parts.push(formatHour(s.hour));
    $('map-clock').textContent = parts.join(' · ');
    $('map-clock').hidden = !parts.length;
  }

  // While the time-lapse plays, the server prepares every hour of the view in one batch job
  // (POST /views/..., docs/ARCHITECTURE.md "Views and time-lapses"); the frames' tiles are then
  // cache hits, or wait for the batch's own work instead of repeating it. Asked again only when
  // the view or the layer changes.
  let preparedViews = '';
  function prepareHours(s, first) {
    const opts = zoomOptions(info, s);
    const z = Math.max(opts.minZoom, Math.min(Math.round(map.getZoom()), opts.maxNativeZoom));
    const b = map.getBounds();
    const bounds = [
      Math.max(b.getWest(), -180), Math.max(b.getSouth(), -85),
      Math.min(b.getEast(), 180), Math.min(b.getNorth(), 85),
    ];
    const [h0, h1] = info.vocabulary.hours;
    const hours = [];
    for (let i = 0, h = first; i <= h1 - h0; i += 1, h = h >= h1 ? h0 : h + 1) hours.push(h);
    const templates = [];
    if (queryId && s.heat) templates.push(heatUrl(s, null));
    if (s.unc) templates.push(uncertaintyUrl(s, null));
    const urls = templates.map((t) => viewUrl(t, z, bounds, hours)).filter(Boolean);
    const key = urls.map((u) => u.replace(/&hours=[^&]*/, '')).join(' ');
    if (!urls.length || key === preparedViews) return;
    preparedViews = key;
    for (const url of urls) {
      // Best effort: a refused batch (too large a view, a busy server) leaves the frames to
      // load tile by tile as before.
      fetch(url, { method: 'POST', credentials: 'same-origin' }).catch(() => {});
    }
  }

  const timelapse = new TimeLapse(
    store,
    async (hours) => {
      const s = store.get();
      const opts = zoomOptions(info, s);
      prepareHours(s, hours[0]);
      const heatUrls = queryId && s.heat ? hours.map((h) => heatUrl(s, h)) : [];
      const uncUrls = s.unc ? hours.map((h) => uncertaintyUrl(s, h)) : [];
      heat.pin(heatUrls);
      unc.pin(uncUrls);
      // Every frame ahead starts loading now; the next one is awaited.
      const heatLoads = heatUrls.map((u) => heat.preload(u, opts));
      const uncLoads = uncUrls.map((u) => unc.preload(u, opts));
      await Promise.all([heatLoads[0], uncLoads[0]]);
    },
    info.vocabulary.hours,
    () => {
      preparedViews = '';
      heat.pin([]);
      unc.pin([]);
      places.schedule(context, 0);
    },
  );

  const has = (changed, keys) => keys.some((k) => changed.has(k));
  store.subscribe((s, changed) => {
    // "Any hour" while playing means the user wants the time-lapse off.
    if (changed.has('hour') && s.hour === null) timelapse.pause();
    reflectControls(s, info);
    reflectCompare(s);
    reflectClock(s);
    window.history.replaceState(null, '', toUrl(s, info));
    if (changed.has('query')) {
      clearError();
      resolveQuery();
    } else {
      if (queryId) reflectQuery(s, describeMetadata(s, info));
      if (has(changed, HEAT_KEYS)) refreshHeat();
    }
    if (has(changed, UNC_KEYS)) refreshUnc();
    if (has(changed, ['heatOpacity', 'uncOpacity', 'fade', 'level', 'heat'])) applyOpacity();
    if (changed.has('labels')) labels.setVisible(s.labels);
    // A map was asked for: on a phone the sheet steps aside to show it.
    if (changed.has('query')) sheet.reveal();
    if (changed.has('base')) setBase(s.base);
    // While the time-lapse plays, the top places wait for the pause (one search, not 24).
    if (has(changed, PLACE_KEYS) && !(timelapse.playing && changed.has('hour'))) {
      places.schedule(context);
    }
  });

  map.on('zoomend', applyOpacity);
  map.on('moveend', () => {
    const c = map.getCenter().wrap();
    store.set({ view: { lat: c.lat, lon: c.lng, zoom: map.getZoom() } });
  });

  bindControls(store);
  bindCompare(store);
  bindQueryInputs(store, info);
  bindInspect(map, context, info);
  bindPlaceSearch(map, info, () => sheet.reveal());
  places.onPick = () => sheet.reveal();

  // First draw from the initial state.
  reflectControls(initial, info);
  reflectCompare(initial);
  reflectClock(initial);
  window.history.replaceState(null, '', toUrl(initial, info));
  setBase(initial.base);
  labels.setVisible(initial.labels);
  applyOpacity();
  refreshUnc();
  resolveQuery();

  // A handle for the browser console and the browser tests.
  window.soundscape = { map, store, info, timelapse, get queryId() { return queryId; } };
  document.body.dataset.ready = 'true';
}

boot();
