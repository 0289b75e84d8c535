// "When does it peak here?": the query at one place through the 24 hours of the day (the map's
// month and sources kept) and its best month, from GET /profile. The line is what the server
// read the peak from: the query's share of the place's sounds when it has labels, else its score.

import { getJSON } from './api.js';
import { hourChart } from './chart.js';
import { MONTHS } from './format.js';
import { metadataParams } from './state.js';

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** "peaks around 05:00" -> "Peaks around 05:00." */
function sentence(text) {
  const t = text.trim();
  return t ? `${t[0].toUpperCase()}${t.slice(1)}${/[.!?]$/.test(t) ? '' : '.'}` : '';
}

/**
 * The popup's daily-profile section for a registered query at a place, or null when the
 * store has no cell there (a 404; the score rows already say so).
 */
export async function profileSection({ lat, lon, queryId, state, level }) {
  let res;
  try {
    res = await getJSON(
      '/profile',
      { lat, lon, query: queryId, ...metadataParams(state), level },
      { what: 'Could not draw this place’s day' },
    );
  } catch (err) {
    if (err.status === 404) return null;
    return el('p', 'profile-error help', err.message);
  }
  const box = el('section', 'profile');
  box.dataset.peakHour = String(res.peak_hour);
  box.dataset.peakMonth = String(res.peak_month);
  box.append(el('h3', 'inspect-heading', 'Through the day here'));
  const summary = sentence(res.summary || '');
  const value = res.peak_by === 'share' ? 'share' : 'score';
  const what = value === 'share'
    ? 'How much of what you would hear at this place is this sound'
    : 'Score at this place';
  box.append(
    hourChart(res.hours, {
      peak: res.peak_hour,
      current: state.hour,
      value,
      label: `${what}, for each hour of the day. ${summary}`,
    }),
  );
  const text = el('p', 'profile-summary', summary);
  const month = MONTHS[res.peak_month - 1];
  if (month) text.append(` Best month: ${month}.`);
  box.append(text);
  return box;
}
