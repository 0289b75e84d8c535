// A small line chart of a query's value over the 24 hours of the day (its share of a place's
// sounds, or its score), drawn as SVG with DOM calls (no chart library; no inline styles
// either, the page's CSP forbids them: colours are in map.css).

import { formatHour, formatNumber, formatPercent } from './format.js';

const NS = 'http://www.w3.org/2000/svg';
const W = 260;
const H = 96;
const PAD = { left: 8, right: 8, top: 10, bottom: 20 };

function svg(tag, attrs = {}) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

/**
 * @param {{hour: number, score: number, share?: number|null}[]} hours the 24 hours, in order
 * @param {{peak: number, current: number|null, label: string, value?: 'score'|'share'}} opts
 *   the peak hour (marked), the hour the map shows (a dashed line; null for any hour), the
 *   chart's accessible name and which value is drawn (the one the peak was read from)
 */
export function hourChart(hours, { peak, current, label, value = 'score' }) {
  const chart = svg('svg', {
    class: 'profile-chart', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img',
    'aria-label': label, 'data-peak-hour': peak, 'data-value': value,
  });
  const title = svg('title');
  title.textContent = label; // the tooltip, and the name for readers that prefer <title>
  chart.append(title);

  const scores = hours.map((h) => h[value]);
  const format = value === 'share' ? formatPercent : formatNumber;
  const lo = Math.min(...scores);
  const hi = Math.max(...scores);
  const span = hi - lo || 1; // a flat day draws a flat line along the bottom
  const x = (hour) => PAD.left + (hour / 23) * (W - PAD.left - PAD.right);
  const y = (score) => H - PAD.bottom - ((score - lo) / span) * (H - PAD.top - PAD.bottom);
  const base = H - PAD.bottom;

  chart.append(svg('line', { class: 'profile-axis', x1: x(0), x2: x(23), y1: base, y2: base }));
  for (const h of [0, 6, 12, 18, 23]) {
    // The end labels align inwards so they are not cut at the chart's edges.
    const anchor = h === 0 ? 'start' : h === 23 ? 'end' : 'middle';
    const tick = svg('text', { class: 'profile-tick', x: x(h), y: H - 6, 'text-anchor': anchor });
    tick.textContent = formatHour(h);
    chart.append(tick);
  }
  if (current !== null) {
    const at = x(current);
    chart.append(svg('line', { class: 'profile-now', x1: at, x2: at, y1: PAD.top, y2: base }));
  }
  const pts = hours.map((h) => `${x(h.hour).toFixed(1)},${y(h[value]).toFixed(1)}`);
  const area = [`${x(0)},${base}`, ...pts, `${x(23)},${base}`];
  chart.append(svg('polygon', { class: 'profile-area', points: area.join(' ') }));
  chart.append(svg('polyline', { class: 'profile-line', points: pts.join(' ') }));
  for (const h of hours) {
    const dot = svg('circle', {
      class: 'profile-point', cx: x(h.hour), cy: y(h[value]), r: 1.6,
      'data-hour': h.hour, 'data-score': h.score, 'data-value': h[value],
    });
    const tip = svg('title');
    tip.textContent = `${formatHour(h.hour)}: ${format(h[value])}`;
    dot.append(tip);
    chart.append(dot);
  }
  const top = hours.find((h) => h.hour === peak);
  if (top) {
    const [px, py] = [x(peak), y(top[value])];
    chart.append(svg('line', { class: 'profile-peak-line', x1: px, x2: px, y1: py, y2: base }));
    chart.append(svg('circle', { class: 'profile-peak', cx: px, cy: py, r: 4 }));
  }
  return chart;
}
