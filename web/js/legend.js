// The legend: each visible layer's colour ramp with its ends in words ("less likely", "more
// likely"), its range written out, and marks such as "top 5 % of this map", from GET /legend
// (one range per map, shared by all its tiles, so the legend is true everywhere).

import { getJSON } from './api.js';
import { formatPercentRange, formatRange } from './format.js';
import { compareParams, heatScale, metadataParams } from './state.js';

const $ = (id) => document.getElementById(id);

// Titles in plain words; the time-lapse test reads "every hour" and "relative" in them.
const HEAT_TITLES = {
  relative: 'How likely here (relative to this map)',
  absolute: 'How likely here (one range for every hour and month)',
  probability: 'Chance of a match',
  percentile: 'Rank among this map’s places',
};

/** The legend's ends as text, in its unit: percent for probability and percentile maps. */
function ends(legend) {
  if (legend.kind === 'heatmap' && legend.scale === 'probability') {
    return formatPercentRange(legend.min, legend.max);
  }
  if (legend.kind === 'heatmap' && legend.scale === 'percentile') {
    return [`${Math.round(legend.min)} %`, `${Math.round(legend.max)} %`];
  }
  return formatRange(legend.min, legend.max);
}

function draw(prefix, legend, title) {
  const block = $(`legend-${prefix}`);
  const ramp = $(`legend-${prefix}-ramp`);
  // CSSOM assignments are allowed under the page's CSP (style attributes in markup are not).
  ramp.style.backgroundImage = `linear-gradient(to right, ${legend.colors.join(', ')})`;
  ramp.setAttribute('aria-label', `${legend.colormap ?? 'diverging'} colour ramp from low to high`);
  $(`legend-${prefix}-title`).textContent = title;
  const lo = $(`legend-${prefix}-min`);
  const hi = $(`legend-${prefix}-max`);
  const [loText, hiText] = ends(legend);
  lo.textContent = loText;
  hi.textContent = hiText;
  lo.dataset.value = String(legend.min);
  hi.dataset.value = String(legend.max);
  block.dataset.kind = legend.kind;
  block.dataset.scale = legend.scale ?? '';
  block.hidden = false;
}

/** The ramp's ends in words ({low, high}); none hides the row. */
function drawWords(prefix, words) {
  const row = $(`legend-${prefix}-words`);
  row.hidden = !words;
  if (!words) return;
  $(`legend-${prefix}-low`).textContent = words.low;
  $(`legend-${prefix}-high`).textContent = words.high;
}

/**
 * Marks on the ramp ("top 5 % of this map"): a bracket from the mark to the ramp's high end,
 * its label under it. Marks outside the range are left out.
 */
function drawMarks(legend) {
  const box = $('legend-heat-marks');
  const span = legend.max - legend.min;
  const marks = (legend.marks || []).filter(
    (m) => Number.isFinite(m.at) && span > 0 && m.at >= legend.min && m.at <= legend.max,
  );
  box.replaceChildren();
  box.hidden = !marks.length;
  for (const m of marks) {
    const frac = (m.at - legend.min) / span;
    const mark = document.createElement('div');
    mark.className = 'legend-mark';
    mark.dataset.at = String(m.at);
    mark.style.left = `${(frac * 100).toFixed(2)}%`;
    const label = document.createElement('span');
    label.className = 'legend-mark-label';
    label.textContent = m.label;
    mark.append(label);
    box.append(mark);
  }
}

export class Legend {
  constructor() {
    this.heatAbort = null;
    this.uncAbort = null;
  }

  /** Heatmap legend for a query id; rejects (404) when the server does not know the query. */
  async showHeatmap(queryId, state) {
    this.heatAbort?.abort();
    this.heatAbort = new AbortController();
    const legend = await getJSON(
      '/legend',
      { query: queryId, ...metadataParams(state), scale: heatScale(state), colormap: state.colormap },
      { signal: this.heatAbort.signal, what: 'Could not load the legend' },
    );
    draw('heat', legend, HEAT_TITLES[legend.scale] ?? HEAT_TITLES.relative);
    drawWords('heat', legend.words ?? { low: 'less likely', high: 'more likely' });
    drawMarks(legend);
    $('legend-heat-note').hidden = true;
    return legend;
  }

  /** Compare legend (A − B, centred at 0) for registered ids; `sides` names A and B. */
  async showCompare(idA, idB, state, sides) {
    this.heatAbort?.abort();
    this.heatAbort = new AbortController();
    const legend = await getJSON(
      '/legend',
      { query: idA, query_b: idB, ...metadataParams(state), ...compareParams(state) },
      { signal: this.heatAbort.signal, what: 'Could not load the comparison legend' },
    );
    draw('heat', legend, 'Which is more likely: A or B');
    // A difference map's ends mean "B scores higher" and "A scores higher": say so in words,
    // and say what A and B are, since the numbers alone do not tell which side is which.
    drawWords('heat', { low: '← B more likely', high: 'A more likely →' });
    drawMarks({ ...legend, marks: [] });
    const note = $('legend-heat-note');
    note.textContent = `A: ${sides.a} · B: ${sides.b}`;
    note.hidden = false;
    return legend;
  }

  async showUncertainty(state) {
    this.uncAbort?.abort();
    this.uncAbort = new AbortController();
    const legend = await getJSON(
      '/legend',
      metadataParams(state),
      { signal: this.uncAbort.signal, what: 'Could not load the uncertainty legend' },
    );
    draw('unc', legend, 'How sure the model is');
    drawWords('unc', legend.words ?? { low: 'more certain', high: 'less certain' });
    return legend;
  }

  hideHeatmap() {
    this.heatAbort?.abort();
    $('legend-heat').hidden = true;
  }

  hideUncertainty() {
    this.uncAbort?.abort();
    $('legend-unc').hidden = true;
  }
}
