// The map's whole state, and its round trip through the page URL: what you see is what you
// share. Values read from a URL are checked against /api/info, so a stale or hand-edited link
// falls back to defaults instead of asking the server for something it would refuse.

export const DEFAULT_QUERY = 'birds singing';

/** Defaults for a store described by /api/info. */
export function defaults(info) {
  return {
    query: { kind: 'text', text: DEFAULT_QUERY },
    month: null, // null = masked: the model fuses no month
    hour: null,
    asource: null,
    tsource: null,
    location: true,
    level: 'auto',
    scale: 'relative',
    sameScale: true, // the time-lapse draws every hour in one colour range (scale=absolute)
    playing: false, // the time-lapse is running (not kept in links)
    colormap: info.colormaps.heatmap[0],
    heat: true,
    heatOpacity: 0.75,
    fade: true, // zoomed in past the data's detail, the heatmap fades so imagery and names show
    labels: true, // place names over the map
    unc: false,
    uncOpacity: 0.6,
    base: 'imagery',
    view: null, // null = fit the store's bounds
    // Compare mode: the heatmap shows score(A) − score(B). A is the query and metadata above;
    // B is A with these overrides (null = same as A), so one query at two hours is B = {hour}.
    compare: false,
    queryB: null, // {kind: 'text', text} or null (A's query)
    bHour: null,
    bMonth: null,
  };
}

function intIn(text, lo, hi) {
  if (text === null || !/^-?\d+$/.test(text)) return undefined;
  const v = Number(text);
  return v >= lo && v <= hi ? v : undefined;
}

function numIn(text, lo, hi) {
  if (text === null || text === '') return undefined;
  const v = Number(text);
  return Number.isFinite(v) && v >= lo && v <= hi ? v : undefined;
}

function oneOf(text, allowed) {
  return allowed.includes(text) ? text : undefined;
}

function bool(text) {
  if (text === '1') return true;
  if (text === '0') return false;
  return undefined;
}

/** State from a URL query string (unknown or invalid values keep their defaults). */
export function fromUrl(search, info, baseChoices) {
  const p = new URLSearchParams(search);
  const s = defaults(info);
  const [m0, m1] = info.vocabulary.months;
  const [h0, h1] = info.vocabulary.hours;
  const levels = info.store.levels.map((lv) => String(lv.psm_zoom));
  const pick = (key, value) => {
    if (value !== undefined) s[key] = value;
  };

  const qid = p.get('qid');
  // Query ids are "aud-" (or "txt-") and 24 hex digits (server/queries.py); anything else
  // would be taken by the server as query text.
  if (qid && /^(aud|txt)-[0-9a-f]{24}$/.test(qid)) {
    s.query = { kind: 'audio', id: qid, name: (p.get('qname') || 'uploaded sound').slice(0, 120) };
  } else if (p.has('q')) {
    const text = p.get('q').trim();
    s.query = text ? { kind: 'text', text: text.slice(0, info.limits.text_chars) } : null;
  }
  pick('month', intIn(p.get('month'), m0, m1));
  pick('hour', intIn(p.get('hour'), h0, h1));
  pick('asource', oneOf(p.get('asource'), info.vocabulary.audio_sources));
  pick('tsource', oneOf(p.get('tsource'), info.vocabulary.caption_sources));
  pick('location', bool(p.get('location')));
  pick('level', oneOf(p.get('level'), ['auto', ...levels]));
  pick('scale', oneOf(p.get('scale'), info.scales));
  pick('sameScale', bool(p.get('same_scale')));
  pick('colormap', oneOf(p.get('cmap'), info.colormaps.heatmap));
  pick('heat', bool(p.get('heat')));
  pick('heatOpacity', numIn(p.get('heat_op'), 0, 1));
  pick('fade', bool(p.get('fade')));
  pick('labels', bool(p.get('labels')));
  pick('unc', bool(p.get('unc')));
  pick('uncOpacity', numIn(p.get('unc_op'), 0, 1));
  pick('base', oneOf(p.get('base'), baseChoices));
  pick('compare', bool(p.get('cmp')));
  const qb = (p.get('qb') || '').trim();
  if (qb) s.queryB = { kind: 'text', text: qb.slice(0, info.limits.text_chars) };
  pick('bHour', intIn(p.get('b_hour'), h0, h1));
  pick('bMonth', intIn(p.get('b_month'), m0, m1));
  const lat = numIn(p.get('lat'), -90, 90);
  const lon = numIn(p.get('lon'), -180, 180);
  const z = numIn(p.get('z'), info.zoom_range[0], info.zoom_range[1]);
  if (lat !== undefined && lon !== undefined && z !== undefined) s.view = { lat, lon, zoom: z };
  return s;
}

/** The URL query string of a state (defaults are left out to keep links short). */
export function toUrl(state, info) {
  const d = defaults(info);
  const p = new URLSearchParams();
  const q = state.query;
  if (q && q.kind === 'audio') {
    p.set('qid', q.id);
    p.set('qname', q.name);
  } else {
    p.set('q', q ? q.text : '');
  }
  if (state.month !== null) p.set('month', state.month);
  if (state.hour !== null) p.set('hour', state.hour);
  if (state.asource !== null) p.set('asource', state.asource);
  if (state.tsource !== null) p.set('tsource', state.tsource);
  if (!state.location) p.set('location', '0');
  if (state.level !== d.level) p.set('level', state.level);
  if (state.scale !== d.scale) p.set('scale', state.scale);
  if (state.sameScale !== d.sameScale) p.set('same_scale', state.sameScale ? '1' : '0');
  if (state.colormap !== d.colormap) p.set('cmap', state.colormap);
  if (state.heat !== d.heat) p.set('heat', state.heat ? '1' : '0');
  if (state.heatOpacity !== d.heatOpacity) p.set('heat_op', state.heatOpacity);
  if (state.fade !== d.fade) p.set('fade', state.fade ? '1' : '0');
  if (state.labels !== d.labels) p.set('labels', state.labels ? '1' : '0');
  if (state.unc !== d.unc) p.set('unc', state.unc ? '1' : '0');
  if (state.uncOpacity !== d.uncOpacity) p.set('unc_op', state.uncOpacity);
  if (state.base !== d.base) p.set('base', state.base);
  if (state.compare) {
    // B travels only with compare on: a link to the plain map stays plain.
    p.set('cmp', '1');
    if (state.queryB) p.set('qb', state.queryB.text);
    if (state.bHour !== null) p.set('b_hour', state.bHour);
    if (state.bMonth !== null) p.set('b_month', state.bMonth);
  }
  if (state.view) {
    // Five decimals is about a metre: plenty for a shared view, and short.
    p.set('lat', state.view.lat.toFixed(5));
    p.set('lon', state.view.lon.toFixed(5));
    p.set('z', String(state.view.zoom));
  }
  return `?${p.toString()}`;
}

/**
 * The heatmap's scale as drawn: while the time-lapse plays with "same colour scale for all
 * hours" on, a relative map uses the query's range over every month and hour, so frames are
 * comparable; otherwise the scale the user chose.
 */
export function heatScale(state) {
  return state.playing && state.sameScale && state.scale === 'relative' ? 'absolute' : state.scale;
}

/** Metadata as POST /similarity wants it (masked fields left out). */
export function metadataOf(state) {
  const m = { location: state.location };
  if (state.month !== null) m.month = state.month;
  if (state.hour !== null) m.hour = state.hour;
  if (state.asource !== null) m.asource = state.asource;
  if (state.tsource !== null) m.tsource = state.tsource;
  return m;
}

/** Metadata as tile and legend query parameters (masked fields left out). */
export function metadataParams(state) {
  return {
    month: state.month,
    hour: state.hour,
    asource: state.asource,
    tsource: state.tsource,
    location: state.location ? null : 'false', // the server's default is on
  };
}

/** Compare mode is on and B differs from A somewhere (else A − B would be zero everywhere). */
export function compareActive(state) {
  return state.compare && (state.queryB !== null || state.bHour !== null || state.bMonth !== null);
}

/** B's metadata overrides as compare tile and legend query parameters (unset ones left out). */
export function compareParams(state) {
  return { b_month: state.bMonth, b_hour: state.bHour };
}

/** A tiny observable: `set(patch)` notifies listeners with the names of the keys that changed. */
export class Store {
  constructor(state) {
    this.state = state;
    this.listeners = [];
  }

  get() {
    return this.state;
  }

  subscribe(fn) {
    this.listeners.push(fn);
  }

  set(patch) {
    const changed = new Set();
    for (const [k, v] of Object.entries(patch)) {
      if (JSON.stringify(this.state[k]) !== JSON.stringify(v)) changed.add(k);
    }
    if (!changed.size) return;
    this.state = { ...this.state, ...patch };
    for (const fn of this.listeners) fn(this.state, changed);
  }
}
