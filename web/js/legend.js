// The legend: each visible layer's colour ramp with its numeric range written out, from
// GET /legend (one range per map, shared by all its tiles, so the legend is true everywhere).

import { getJSON } from './api.js';
import { formatRange } from './format.js';
import { compareParams, heatScale, metadataParams } from './state.js';

function draw(prefix, legend, title) {
  const block = document.getElementById(`legend-${prefix}`);
  const ramp = document.getElementById(`legend-${prefix}-ramp`);
  // CSSOM assignments are allowed under the page's CSP (style attributes in markup are not).
  ramp.style.backgroundImage = `linear-gradient(to right, ${legend.colors.join(', ')})`;
  ramp.setAttribute('aria-label', `${legend.colormap ?? 'diverging'} colour ramp from low to high`);
  document.getElementById(`legend-${prefix}-title`).textContent = title;
  const lo = document.getElementById(`legend-${prefix}-min`);
  const hi = document.getElementById(`legend-${prefix}-max`);
  const pct = legend.kind === 'heatmap' && legend.scale === 'probability';
  const [loText, hiText] = formatRange(legend.min, legend.max);
  lo.textContent = pct ? `${Math.round(legend.min * 100)} %` : loText;
  hi.textContent = pct ? `${Math.round(legend.max * 100)} %` : hiText;
  lo.dataset.value = String(legend.min);
  hi.dataset.value = String(legend.max);
  block.dataset.kind = legend.kind;
  block.hidden = false;
}

// A difference map's ends mean "B scores higher" and "A scores higher": say so in words, and
// say what A and B are, since the numbers alone do not tell which side is which.
function drawSides(sides) {
  const words = document.getElementById('legend-heat-words');
  const note = document.getElementById('legend-heat-note');
  words.hidden = !sides;
  note.hidden = !sides;
  note.textContent = sides ? `A: ${sides.a} · B: ${sides.b}` : '';
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
    const title = {
      probability: 'Match probability',
      absolute: 'Match score (−CSD, same range for every hour and month)',
    }[legend.scale] ?? 'Match score (−CSD, relative to this map)';
    draw('heat', legend, title);
    drawSides(null);
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
    draw('heat', legend, 'Score difference A − B (−CSD)');
    drawSides(sides);
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
    draw('unc', legend, 'Uncertainty (‖σ‖₁, low → high)');
    return legend;
  }

  hideHeatmap() {
    this.heatAbort?.abort();
    document.getElementById('legend-heat').hidden = true;
  }

  hideUncertainty() {
    this.uncAbort?.abort();
    document.getElementById('legend-unc').hidden = true;
  }
}
