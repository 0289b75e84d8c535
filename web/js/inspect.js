// Clicking the map: a popup that says in words where the place is, how likely the sound is
// there (its rank among this map's places) and how sure the model is, with the raw numbers of
// POST /similarity (for the PSM level the map is drawing there) behind a details toggle; the
// query's day at that place (profile.js); and the sounds most likely heard there (listen.js).
// Each part fills in when its answer comes. Keyboard users press Enter on the focused map to
// inspect its centre.

import * as L from '/vendor/leaflet/leaflet-src.esm.js';
import { postJSON } from './api.js';
import {
  formatLatLon, formatNumber, formatPercent, formatPlace, likelihoodWords, rankWords,
} from './format.js';
import { listenSection } from './listen.js';
import { profileSection } from './profile.js';
import { metadataOf } from './state.js';

function row(dl, field, label, value, text) {
  const dt = document.createElement('dt');
  dt.textContent = label;
  const dd = document.createElement('dd');
  dd.dataset.field = field;
  // The exact value rides along for anyone who wants more digits (and for the tests).
  dd.dataset.value = value === null ? '' : String(value);
  dd.textContent = text;
  dl.append(dt, dd);
}

function message(text) {
  const p = document.createElement('p');
  p.className = 'inspect-message';
  p.textContent = text;
  return p;
}

const CONFIDENCE_HELP = {
  high: 'the model is surer here than at most places',
  medium: 'about as sure as at most places',
  low: 'the model is less sure here than at most places',
};

function para(className, text) {
  const p = document.createElement('p');
  p.className = className;
  p.textContent = text;
  return p;
}

function scores(result, level) {
  if (result.score === null) return message('No data here: this place is outside the map’s coverage.');
  const part = document.createDocumentFragment();
  // How likely, in words, from the place's rank on this map.
  const words = likelihoodWords(result.percentile);
  const likely = para('inspect-likely', '');
  if (words) {
    const strong = document.createElement('strong');
    strong.textContent = words;
    likely.append(strong, `: ${rankWords(result.percentile)}.`);
    likely.dataset.percentile = String(result.percentile);
  } else {
    likely.textContent = 'Not ranked: only places on land in the map’s region are compared.';
  }
  part.append(likely);
  if (result.confidence) {
    const conf = para('inspect-confidence', '');
    const strong = document.createElement('strong');
    strong.textContent = `Confidence: ${result.confidence}`;
    conf.append(strong, ` (${CONFIDENCE_HELP[result.confidence] ?? ''}).`);
    conf.dataset.confidence = result.confidence;
    part.append(conf);
  }
  // The numbers as the API gives them, for those who want them.
  const details = document.createElement('details');
  details.className = 'inspect-numbers';
  const summary = document.createElement('summary');
  summary.textContent = 'Numbers';
  const dl = document.createElement('dl');
  row(dl, 'score', 'Score (−CSD)', result.score, formatNumber(result.score));
  row(dl, 'probability', 'Match probability', result.probability, formatPercent(result.probability));
  const pct = result.percentile ?? null;
  row(dl, 'percentile', 'Rank (percentile)', pct, pct === null ? '—' : `${pct.toFixed(1)} %`);
  row(dl, 'uncertainty', 'Uncertainty (‖σ‖₁)', result.uncertainty, formatNumber(result.uncertainty));
  row(dl, 'level', 'PSM zoom', level, String(level));
  details.append(summary, dl);
  part.append(details);
  return part;
}

// Outside the store's bounds /profile and /listen can only answer 404, which the browser
// would log as an error: do not ask.
function covered(info, lat, lon) {
  const b = info.store.bounds;
  return !b || (lon >= b[0] && lat >= b[1] && lon <= b[2] && lat <= b[3]);
}

/**
 * @param {L.Map} map
 * @param {() => {queryId: string|null, state: object, level: number|null}} context
 * @param {object} info /api/info (its `gallery` says whether there are sounds to listen to)
 */
export function bindInspect(map, context, info) {
  const inspect = (latlng) => {
    const { queryId, state, level } = context();
    const ll = latlng.wrap(); // the map repeats the world sideways; the server wants -180..180
    const lat = Math.max(-90, Math.min(90, ll.lat));
    const lon = ll.lng;
    const inside = covered(info, lat, lon);
    const box = document.createElement('div');
    box.className = 'inspect';
    box.dataset.lat = String(lat);
    box.dataset.lon = String(lon);
    // The place's name (from the score's answer) above its coordinates.
    const name = document.createElement('p');
    name.className = 'inspect-place';
    const where = document.createElement('p');
    where.className = 'inspect-where';
    where.textContent = formatLatLon(lat, lon);
    box.append(name, where);

    // A tall popup (sounds, chart) scrolls inside the map rather than running off it.
    const maxHeight = Math.max(220, map.getSize().y - 90);
    const popup = L.popup({ minWidth: 240, maxWidth: 300, maxHeight })
      .setLatLng(latlng)
      .setContent(box)
      .openOn(map);
    // Opening the "Numbers" toggle makes the popup taller: keep it in view ('toggle' does not
    // bubble, hence the capture).
    box.addEventListener('toggle', () => popup.update(), true);
    // A closed popup's <audio> would play on, detached and unstoppable.
    popup.on('remove', () => box.querySelectorAll('audio').forEach((a) => a.pause()));

    // One slot per part, in reading order, filled when its answer comes; a part with nothing
    // to say (null) leaves. Answers for a popup that has since closed fill a detached box.
    const slot = (className, waiting, load) => {
      const part = document.createElement('div');
      part.className = className;
      part.append(message(waiting));
      box.append(part);
      load().then((node) => {
        if (node) part.replaceChildren(node);
        else part.remove();
        popup.update();
      });
    };

    if (!queryId) {
      box.append(message('Ask for a sound first: type a query or upload a sound.'));
    } else {
      const body = { query: { id: queryId }, metadata: metadataOf(state), points: [[lat, lon]] };
      if (level !== null) body.level = level;
      slot('inspect-scores', 'Scoring this place…', async () => {
        try {
          const res = await postJSON('/similarity', body, { what: 'Could not score this place' });
          box.dataset.query = res.query;
          box.dataset.level = String(res.level);
          const r = res.results[0];
          if (r.place) name.textContent = `near ${formatPlace(r.place)}`;
          return scores(r, res.level);
        } catch (err) {
          return message(err.message);
        }
      });
      if (inside) {
        const place = { lat, lon, queryId, state, level };
        slot('inspect-profile', 'Drawing its day…', () => profileSection(place));
      }
    }
    // Listening needs no query; without a gallery the service has nothing to play.
    if (info.gallery && inside) {
      slot('inspect-listen', 'Finding sounds…', () => listenSection({ lat, lon, state, level }));
    }
  };
  map.on('click', (e) => inspect(e.latlng));
  map.getContainer().addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.target === map.getContainer()) inspect(map.getCenter());
  });
}
