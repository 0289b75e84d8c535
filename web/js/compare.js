// Compare mode's card: what B is (another sound, hour or month than A), written into the state
// and redrawn from it, and B's query id for the compare tiles. A is the map the other controls
// describe; B is A with the overrides chosen here (docs/ARCHITECTURE.md, "HTTP": /compare).

import { registerText } from './api.js';
import { formatHour, MONTHS } from './format.js';
import { compareActive } from './state.js';

const $ = (id) => document.getElementById(id);

function option(select, value, text) {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = text;
  select.append(o);
}

/** Fill B's hour and month choices from /api/info's vocabulary. */
export function buildCompare(info) {
  option($('compare-hour'), '', 'Same as A');
  const [h0, h1] = info.vocabulary.hours;
  for (let h = h0; h <= h1; h += 1) option($('compare-hour'), String(h), formatHour(h));
  option($('compare-month'), '', 'Same as A');
  const [m0, m1] = info.vocabulary.months;
  for (let m = m0; m <= m1; m += 1) option($('compare-month'), String(m), MONTHS[m - 1]);
  $('compare-query').maxLength = info.limits.text_chars;
}

/** Send the card's changes into the store. */
export function bindCompare(store) {
  const numberOrNull = (v) => (v === '' ? null : Number(v));
  $('compare-on').addEventListener('change', (e) => store.set({ compare: e.target.checked }));
  $('compare-hour').addEventListener('change', (e) => store.set({ bHour: numberOrNull(e.target.value) }));
  $('compare-month').addEventListener('change', (e) => store.set({ bMonth: numberOrNull(e.target.value) }));
  $('compare-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('compare-query').value.trim();
    // Choosing B is asking to compare: turn the mode on with it.
    store.set({ queryB: text ? { kind: 'text', text } : null, compare: true });
  });
}

function queryName(q) {
  if (!q) return 'nothing';
  return q.kind === 'audio' ? q.name : `“${q.text}”`;
}

function when(month, hour) {
  const parts = [];
  if (month !== null) parts.push(MONTHS[month - 1]);
  if (hour !== null) parts.push(formatHour(hour));
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/** Short names of A and B for the legend: `“birds singing” (06:00)` and `… (22:00)`. */
export function describeSides(state) {
  const b = {
    query: state.queryB ?? state.query,
    month: state.bMonth ?? state.month,
    hour: state.bHour ?? state.hour,
  };
  return {
    a: queryName(state.query) + when(state.month, state.hour),
    b: queryName(b.query) + when(b.month, b.hour),
  };
}

/** Redraw the card from the state. */
export function reflectCompare(state) {
  $('compare-on').checked = state.compare;
  $('compare-hour').value = state.bHour === null ? '' : String(state.bHour);
  $('compare-month').value = state.bMonth === null ? '' : String(state.bMonth);
  if (document.activeElement !== $('compare-query')) {
    $('compare-query').value = state.queryB ? state.queryB.text : '';
  }
  let status = '';
  if (state.compare && !compareActive(state)) {
    status = 'B is the same as A: choose another sound, hour or month for B.';
  } else if (compareActive(state)) {
    const { a, b } = describeSides(state);
    status = `Comparing A: ${a} with B: ${b}.`;
  }
  $('compare-status').textContent = status;
  document.body.dataset.compare = String(compareActive(state));
}

// Text is registered once per session: the time-lapse asks for B's id every frame.
const registered = new Map();

/** B's registered query id: A's own id when B keeps A's query. */
export function queryIdB(state, idA) {
  if (!state.queryB) return Promise.resolve(idA);
  const text = state.queryB.text;
  if (!registered.has(text)) {
    const id = registerText(text).then((res) => res.id);
    // A failure is not kept: the next try asks again.
    id.catch(() => registered.delete(text));
    registered.set(text, id);
  }
  return registered.get(text);
}
