// The metadata, scale and layer controls: built from /api/info (so they offer exactly what the
// loaded model and store accept), written into the state on change, and redrawn from the state
// (so a shared URL or the time-lapse moves them too).

import { formatHour, MONTHS } from './format.js';
import { levelZoomRange } from './levels.js';

const $ = (id) => document.getElementById(id);

function option(select, value, text, disabled = false) {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = text;
  o.disabled = disabled;
  select.append(o);
}

/** Fill the selects from /api/info and the base-map choices. */
export function buildControls(info, baseChoices) {
  option($('month'), '', 'Any month');
  const [m0, m1] = info.vocabulary.months;
  for (let m = m0; m <= m1; m += 1) option($('month'), String(m), MONTHS[m - 1]);

  const [h0, h1] = info.vocabulary.hours;
  $('hour').min = String(h0);
  $('hour').max = String(h1);

  option($('asource'), '', 'Any source');
  for (const s of info.vocabulary.audio_sources) option($('asource'), s, s);
  option($('tsource'), '', 'Any source');
  for (const s of info.vocabulary.caption_sources) option($('tsource'), s, s);

  option($('level'), 'auto', 'Auto (by map zoom)');
  const have = new Map(info.store.levels.map((lv) => [lv.psm_zoom, lv]));
  for (const z of [1, 3, 5]) {
    const lv = have.get(z);
    option($('level'), String(z), lv ? `${z}` : `${z} (not in this store)`, !lv);
  }

  for (const c of info.colormaps.heatmap) option($('colormap'), c, c);

  for (const [value, text] of baseChoices) option($('base'), value, text);
  $('base-field').hidden = baseChoices.length < 2;

  $('audio-limit').textContent = String(info.limits.audio_seconds);
  $('query-text').maxLength = info.limits.text_chars;
}

/** Send every control change into the store. */
export function bindControls(store) {
  const set = (patch) => store.set(patch);
  const optional = (v) => (v === '' ? null : v);
  $('month').addEventListener('change', (e) => set({ month: e.target.value ? Number(e.target.value) : null }));
  // `input` follows the thumb as it is dragged (or moved by arrow keys).
  $('hour').addEventListener('input', (e) => set({ hour: Number(e.target.value) }));
  $('hour-any').addEventListener('change', (e) => {
    set({ hour: e.target.checked ? null : Number($('hour').value) });
  });
  $('asource').addEventListener('change', (e) => set({ asource: optional(e.target.value) }));
  $('tsource').addEventListener('change', (e) => set({ tsource: optional(e.target.value) }));
  $('location').addEventListener('change', (e) => set({ location: e.target.checked }));
  $('level').addEventListener('change', (e) => set({ level: e.target.value }));
  for (const radio of document.querySelectorAll('input[name="scale"]')) {
    radio.addEventListener('change', (e) => set({ scale: e.target.value }));
  }
  $('colormap').addEventListener('change', (e) => set({ colormap: e.target.value }));
  $('same-scale').addEventListener('change', (e) => set({ sameScale: e.target.checked }));
  $('heat-on').addEventListener('change', (e) => set({ heat: e.target.checked }));
  $('heat-opacity').addEventListener('input', (e) => set({ heatOpacity: Number(e.target.value) }));
  $('unc-on').addEventListener('change', (e) => set({ unc: e.target.checked }));
  $('unc-opacity').addEventListener('input', (e) => set({ uncOpacity: Number(e.target.value) }));
  $('base').addEventListener('change', (e) => set({ base: e.target.value }));
}

/** Redraw the controls from the state. */
export function reflectControls(state, info) {
  $('month').value = state.month === null ? '' : String(state.month);
  $('hour-any').checked = state.hour === null;
  $('hour').disabled = state.hour === null;
  if (state.hour !== null) $('hour').value = String(state.hour);
  $('hour-out').textContent = state.hour === null ? 'any' : formatHour(state.hour);
  $('hour').setAttribute(
    'aria-valuetext',
    state.hour === null ? 'any hour' : formatHour(state.hour),
  );
  $('asource').value = state.asource ?? '';
  $('tsource').value = state.tsource ?? '';
  $('location').checked = state.location;
  $('level').value = state.level;
  for (const radio of document.querySelectorAll('input[name="scale"]')) {
    radio.checked = radio.value === state.scale;
  }
  $('colormap').value = state.colormap;
  $('same-scale').checked = state.sameScale;
  $('heat-on').checked = state.heat;
  $('heat-opacity').value = String(state.heatOpacity);
  $('heat-opacity-out').textContent = `${Math.round(state.heatOpacity * 100)} %`;
  $('heat-opacity').disabled = !state.heat;
  $('unc-on').checked = state.unc;
  $('unc-opacity').value = String(state.uncOpacity);
  $('unc-opacity-out').textContent = `${Math.round(state.uncOpacity * 100)} %`;
  $('unc-opacity').disabled = !state.unc;
  $('base').value = state.base;

  if (state.level === 'auto') {
    $('level-help').textContent = 'Coarser levels listen to wider surroundings (PSM zoom 1/3/5).';
  } else {
    const lv = info.store.levels.find((l) => String(l.psm_zoom) === state.level);
    const [lo] = levelZoomRange(lv);
    const km = (lv.cell_size_m / 1000).toFixed(1);
    $('level-help').textContent = `Cells of about ${km} km, shown from map zoom ${lo}.`;
  }
}
