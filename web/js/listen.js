// "What would I hear here?": the recordings of the service's sound gallery that best match a
// place under the map's month, hour and sources (GET /listen), each playable, and the sound
// labels ranked for that place. Needs no query: it answers from the place alone.

import { getJSON } from './api.js';
import { formatPercent } from './format.js';
import { metadataParams } from './state.js';

const SOUNDS = 3; // enough to hear the place's character; more make the popup a long scroll
const LABELS = 3;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// The gallery is served by our own server; anything else would break the page's CSP anyway.
function sameOrigin(url) {
  try {
    return new URL(url, window.location.href).origin === window.location.origin;
  } catch {
    return false;
  }
}

function soundItem(sound) {
  const li = el('li', 'sound');
  li.dataset.id = sound.id;
  li.dataset.probability = String(sound.probability);
  const line = el('p', 'sound-line');
  line.append(
    el('span', 'sound-caption', sound.caption),
    el('span', 'sound-prob', formatPercent(sound.probability)),
  );
  li.append(line);
  if (sameOrigin(sound.audio_url)) {
    const audio = document.createElement('audio');
    audio.controls = true;
    audio.preload = 'none'; // nothing is downloaded until someone presses play
    audio.src = sound.audio_url;
    audio.setAttribute('aria-label', `Play: ${sound.caption}`);
    li.append(audio);
  }
  return li;
}

function labelsLine(labels) {
  const top = labels.slice(0, LABELS);
  const text = top.map((l) => `${l.label} ${Math.round(l.probability * 100)} %`).join(', ');
  const p = el('p', 'listen-labels', `Most likely: ${text}`);
  p.dataset.labels = top.map((l) => l.label).join('\n');
  return p;
}

/**
 * The popup's listening section for a place, or null when the service has no sound there
 * (a 404: no gallery, or no cell under the point; the score rows already say the latter).
 */
export async function listenSection({ lat, lon, state, level }) {
  let res;
  try {
    res = await getJSON(
      '/listen',
      { lat, lon, ...metadataParams(state), level, k: SOUNDS },
      { what: 'Could not find sounds for this place' },
    );
  } catch (err) {
    if (err.status === 404) return null;
    return el('p', 'listen-error help', err.message);
  }
  const box = el('section', 'listen');
  box.setAttribute('aria-label', 'Sounds heard here');
  box.append(el('h3', 'inspect-heading', 'What you might hear here'));
  if (res.labels.length) box.append(labelsLine(res.labels));
  const list = el('ol', 'sounds');
  list.append(...res.sounds.map(soundItem));
  box.append(list);
  // One sound at a time: starting one pauses the others (media events do not bubble).
  box.addEventListener('play', (e) => {
    for (const a of box.querySelectorAll('audio')) if (a !== e.target) a.pause();
  }, true);
  return box;
}
