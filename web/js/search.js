// Finding a place by name (GET /places/search, GeoNames, offline): type a few letters, pick a
// place (click, or arrow keys and Enter; Enter in the box takes the first), and the map flies
// there. Places outside the map's data say so before you pick them.

import { getJSON } from './api.js';
import { formatPlace } from './format.js';

const $ = (id) => document.getElementById(id);
const LIMIT = 6;
const MAX_CHARS = 100;

/**
 * @param {L.Map} map
 * @param {object} info /api/info (store bounds and zoom range)
 * @param {(place: object) => void} onPick called after the map starts flying to a place
 */
export function bindPlaceSearch(map, info, onPick = () => {}) {
  const input = $('place-search');
  const list = $('place-results');
  const status = $('place-search-status');
  let found = [];
  let timer = null;
  let abort = null;
  let seq = 0;

  const inStore = (p) => {
    const b = info.store.bounds;
    return !b || (p.lon >= b[0] && p.lat >= b[1] && p.lon <= b[2] && p.lat <= b[3]);
  };

  const close = () => {
    list.hidden = true;
  };

  const pick = (place) => {
    close();
    input.value = place.name;
    status.textContent = inStore(place)
      ? `Showing ${formatPlace(place)}.`
      : `${formatPlace(place)} is outside this map’s data: no colours there.`;
    const zoom = Math.min(Math.max(map.getZoom(), 9), info.zoom_range[1]);
    map.flyTo([place.lat, place.lon], zoom);
    onPick(place);
  };

  const show = (places) => {
    found = places;
    list.replaceChildren();
    for (const place of places) {
      const li = document.createElement('li');
      const btn = document.createElement('button');
      btn.type = 'button';
      btn.className = 'place-result';
      btn.dataset.lat = String(place.lat);
      btn.dataset.lon = String(place.lon);
      const name = document.createElement('span');
      name.className = 'place-result-name';
      name.textContent = place.name;
      const more = document.createElement('span');
      more.className = 'place-result-more';
      more.textContent = [place.admin1, place.country_code].filter(Boolean).join(', ')
        + (inStore(place) ? '' : ' · outside the map');
      btn.append(name, more);
      btn.addEventListener('click', () => pick(place));
      li.append(btn);
      list.append(li);
    }
    list.hidden = !places.length;
  };

  const search = async () => {
    const q = input.value.trim().slice(0, MAX_CHARS);
    const mine = (seq += 1);
    abort?.abort();
    if (!q) {
      show([]);
      status.textContent = '';
      return;
    }
    abort = new AbortController();
    try {
      const res = await getJSON(
        '/places/search',
        { q, limit: LIMIT },
        { signal: abort.signal, what: 'Could not search for places' },
      );
      if (mine !== seq) return;
      show(res.places);
      status.textContent = res.places.length
        ? `${res.places.length} place${res.places.length > 1 ? 's' : ''} found.`
        : `No place found whose name starts with “${q}”.`;
    } catch (err) {
      if (err.name === 'AbortError' || mine !== seq) return;
      show([]);
      status.textContent = err.message;
    }
  };

  input.addEventListener('input', () => {
    // The list shown is for the old text: gone until the new answer comes.
    found = [];
    close();
    clearTimeout(timer);
    timer = setTimeout(search, 200);
  });
  $('place-search-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    clearTimeout(timer);
    const q = input.value.trim();
    if (!q) {
      status.textContent = 'Type the first letters of a place’s name.';
      return;
    }
    await search();
    if (found.length) pick(found[0]);
  });
  // Arrow keys walk the list; Escape closes it.
  $('place-search-form').addEventListener('keydown', (e) => {
    const buttons = [...list.querySelectorAll('button')];
    const at = buttons.indexOf(document.activeElement);
    if (e.key === 'Escape') {
      close();
      input.focus();
    } else if (e.key === 'ArrowDown' && buttons.length && !list.hidden) {
      e.preventDefault();
      buttons[Math.min(at + 1, buttons.length - 1)].focus();
    } else if (e.key === 'ArrowUp' && at >= 0) {
      e.preventDefault();
      if (at === 0) input.focus();
      else buttons[at - 1].focus();
    }
  });
  // A click elsewhere closes the list (and keeps what was typed).
  document.addEventListener('pointerdown', (e) => {
    if (!$('place-search-form').contains(e.target)) close();
  });
  input.addEventListener('focus', () => {
    if (found.length && input.value.trim()) {
      list.hidden = false;
    }
  });
}
