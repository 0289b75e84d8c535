// The metadata, scale and layer controls: built from /api/info (so they offer exactly what the
// loaded model and store accept), written into the state on change, and redrawn from the state
// (so a shared URL or the time-lapse moves them too).

import { formatHour, MONTHS } from './format.js';
import { levelZoomRange } from './levels.js';

const $ = (id) => document.getElementById(id);

// Each colour scale in a sentence (the radio buttons name them, this says what they mean).
export const SCALE_HELP = {
  relative: 'Colours stretch from the least to the most likely places on land in this map, '
    + 'for the month and hour you chose.',
  absolute: 'One colour range for every hour and month of this sound, so maps of different '
    + 'times can be compared.',
  probability: 'The model’s chance, in percent, that this sound is the one heard at each place '
    + '(small numbers: it chooses among many places).',
  percentile: 'Each place’s rank among this map’s places on land: 90 % means it is more likely '
    + 'than 90 % of them.',
};

const ANY_AUDIO = 'Any source: the map does not assume which collection the recording is from.';
const ANY_CAPTION = 'Any source: the map does not assume how the sound was described.';

function sourceHelp(info, kind) {
  return info.vocabulary.source_help?.[kind] ?? {};
}

/** "about 59 km" (one decimal below 10 km). */
function km(value) {
  return value >= 10 ? `${Math.round(value)} km` : `${value.toFixed(1)} km`;
}

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

  // "aporee — Radio Aporee": the name, then who or what it is (the explanation up to its colon).
  const label = (name, help) => (help ? `${name} — ${help.split(':')[0].replace(/\.$/, '')}` : name);
  const audioHelp = sourceHelp(info, 'audio');
  const captionHelp = sourceHelp(info, 'caption');
  option($('asource'), '', 'Any source');
  for (const s of info.vocabulary.audio_sources) option($('asource'), s, label(s, audioHelp[s]));
  option($('tsource'), '', 'Any source');
  for (const s of info.vocabulary.caption_sources) {
    option($('tsource'), s, label(s, captionHelp[s]));
  }
  const list = $('sources-list');
  const entry = (kind, name, text) => {
    const dt = document.createElement('dt');
    dt.textContent = `${kind} ${name}`;
    const dd = document.createElement('dd');
    dd.textContent = text || 'No description.';
    list.append(dt, dd);
  };
  for (const s of info.vocabulary.audio_sources) entry('Audio:', s, audioHelp[s]);
  for (const s of info.vocabulary.caption_sources) entry('Captions:', s, captionHelp[s]);

  option($('level'), 'auto', 'Auto (by map zoom)');
  const have = new Map(info.store.levels.map((lv) => [lv.psm_zoom, lv]));
  for (const z of [1, 3, 5]) {
    const lv = have.get(z);
    let text = `Level ${z} (not in this store)`;
    if (lv && lv.footprint_km) text = `Level ${z}: about ${km(lv.footprint_km)} around each place`;
    else if (lv) text = `Level ${z}`;
    option($('level'), String(z), text, !lv);
  }

  // Only the scales this server draws are offered.
  for (const radio of document.querySelectorAll('input[name="scale"]')) {
    if (!info.scales.includes(radio.value)) radio.closest('label').hidden = true;
  }

  for (const c of info.colormaps.heatmap) option($('colormap'), c, c);

  for (const [value, text] of baseChoices) option($('base'), value, text);
  $('base-field').hidden = baseChoices.length < 2;

  $('audio-limit').textContent = String(info.limits.audio_seconds);
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
  $('heat-fade').addEventListener('change', (e) => set({ fade: e.target.checked }));
  $('labels-on').addEventListener('change', (e) => set({ labels: e.target.checked }));
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
  $('heat-fade').checked = state.fade;
  $('heat-fade').disabled = !state.heat;
  $('labels-on').checked = state.labels;
  $('scale-help').textContent = SCALE_HELP[state.scale] ?? '';
  const audioHelp = sourceHelp(info, 'audio');
  const captionHelp = sourceHelp(info, 'caption');
  $('asource-help').textContent = state.asource === null ? ANY_AUDIO : audioHelp[state.asource] ?? '';
  $('tsource-help').textContent =
    state.tsource === null ? ANY_CAPTION : captionHelp[state.tsource] ?? '';
  $('unc-on').checked = state.unc;
  $('unc-opacity').value = String(state.uncOpacity);
  $('unc-opacity-out').textContent = `${Math.round(state.uncOpacity * 100)} %`;
  $('unc-opacity').disabled = !state.unc;
  $('base').value = state.base;

  if (state.level === 'auto') {
    const sizes = info.store.levels
      .filter((lv) => lv.footprint_km)
      .map((lv) => km(lv.footprint_km));
    $('level-help').textContent = sizes.length
      ? `The map chooses by zoom. Each level listens to a different stretch of land around a place: ${sizes.join(', ')}.`
      : 'The map chooses by zoom: wider surroundings when zoomed out.';
  } else {
    const lv = info.store.levels.find((l) => String(l.psm_zoom) === state.level);
    const [lo] = levelZoomRange(lv);
    const cell = km(lv.cell_size_m / 1000);
    const listens = lv.footprint_km ? `Listens to about ${km(lv.footprint_km)} around each place; ` : '';
    $('level-help').textContent = `${listens}one colour block is about ${cell} across (PSM zoom ${lv.psm_zoom}, shown from map zoom ${lo}).`;
  }
}
