// Talking to the soundscape service (docs/ARCHITECTURE.md, "HTTP"). Every request goes to our own origin; every
// failure becomes an ApiError whose message a person can act on.

import { activity } from './status.js';

/** An HTTP failure with a human message; `status` is 0 when the server could not be reached. */
export class ApiError extends Error {
  constructor(message, status, detail, retryAfter) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

/** Query-string from an object, leaving out null/undefined values. */
export function queryString(params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined) qs.set(k, String(v));
  }
  const s = qs.toString();
  return s ? `?${s}` : '';
}

// FastAPI validation errors are lists of {loc, msg}: keep the messages, drop the machinery.
export function detailText(detail) {
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => (d && d.msg ? d.msg : JSON.stringify(d))).join('; ');
  }
  return detail ? JSON.stringify(detail) : '';
}

async function failure(response, what) {
  let detail = '';
  try {
    detail = (await response.json()).detail;
  } catch {
    // a proxy's HTML error page: the status says enough
  }
  const text = detailText(detail);
  const retry = Number(response.headers.get('Retry-After')) || null;
  const s = response.status;
  let message;
  if (s === 503) {
    message = `The server is busy right now${retry ? `; try again in ${retry} s` : ''}.`;
  } else if (s === 429) {
    message = `Too many requests; please wait ${retry || 'a few'} s and try again.`;
  } else if (s === 413) {
    // The server's own reason says it once; the page's words stand in only without one.
    message = `${what}: ${text || 'the file is too large or too long'}`;
  } else if (s === 415) {
    message = `${what}: ${text || 'this file type is not supported (use WAV, FLAC, OGG or MP3)'}`;
  } else if (s === 404) {
    message = `${what}: ${text || 'not found'}`;
  } else {
    message = `${what}: ${text || `the server answered ${s}`}`;
  }
  return new ApiError(message.trim(), s, detail, retry);
}

async function request(url, init, what) {
  const done = activity();
  try {
    let response;
    try {
      response = await fetch(url, { credentials: 'same-origin', ...init });
    } catch (err) {
      if (err.name === 'AbortError') throw err;
      throw new ApiError(`${what}: the server cannot be reached.`, 0, String(err), null);
    }
    if (!response.ok) throw await failure(response, what);
    return await response.json();
  } finally {
    done();
  }
}

/** GET JSON. */
export function getJSON(path, params = {}, { signal, what = 'Request failed' } = {}) {
  return request(path + queryString(params), { signal }, what);
}

/** POST a JSON body, answer JSON. */
export function postJSON(path, body, { signal, what = 'Request failed' } = {}) {
  return request(
    path,
    { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal },
    what,
  );
}

/** Register a text query: {id, kind, uncertainty, tiles, tilejson}. */
export function registerText(text) {
  return postJSON('/queries', { text }, { what: 'Could not map this text' });
}

/** Register an audio query from a File/Blob (multipart field `audio`). */
export function registerAudio(blob, filename) {
  const form = new FormData();
  form.append('audio', blob, filename);
  return request('/queries', { method: 'POST', body: form }, 'Could not use this sound');
}

/** Registered query by id: {id, kind, familiarity, hint, …}; rejects 404 for an unknown id. */
export function getQuery(id, what) {
  return getJSON(`/queries/${encodeURIComponent(id)}`, {}, { what });
}
