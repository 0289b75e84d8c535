// Asking the map a question: the text box with its examples, sound files (picker and
// drag-and-drop anywhere on the page), and the microphone. Text goes into the state as text
// (main.js registers it); a sound is uploaded here and goes into the state as its query id.

import { detailText, registerAudio } from './api.js';
import { canRecord, startRecording } from './record.js';
import { clearError, showError } from './status.js';

const $ = (id) => document.getElementById(id);

/** A message in words next to a control (`kind`: 'error' or 'note'); '' clears it. */
function feedback(id, text, kind = 'note') {
  const el = $(id);
  el.textContent = text;
  el.dataset.kind = text ? kind : '';
}

/** "the audio is silent" -> "The audio is silent." */
function sentence(text) {
  const t = String(text || '').trim();
  if (!t) return '';
  return t[0].toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? '' : '.');
}

const panelHidden = () => $('panel').classList.contains('is-collapsed');

// Sounds the demo world knows; any words work, these are a start.
export const EXAMPLES = [
  'birds singing',
  'crickets chirping at night',
  'frogs croaking near a pond',
  'cows mooing in a field',
  'a rooster crowing',
  'heavy road traffic',
  'waves crashing on the shore',
  'wind blowing',
  'thunder and rain',
  'church bells ringing',
  'a babbling stream',
];

function buildExamples(store) {
  for (const text of EXAMPLES) {
    const opt = document.createElement('option');
    opt.value = text;
    $('query-examples').append(opt);
    const li = document.createElement('li');
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'example';
    btn.textContent = text;
    btn.addEventListener('click', () => {
      $('query-text').value = text;
      feedback('query-feedback', '');
      store.set({ query: { kind: 'text', text } });
    });
    li.append(btn);
    $('examples').append(li);
  }
}

/**
 * Upload a sound and make it the active query. A refusal (not audio, silent, too short, too
 * long) is said once, in the server's words, next to the sound controls; with the controls
 * closed (phone) it goes to the banner instead.
 */
async function useSound(store, blob, name) {
  clearError();
  feedback('audio-feedback', `Uploading ${name}…`);
  try {
    const q = await registerAudio(blob, name);
    feedback('audio-feedback', `Mapping ${name}.`);
    store.set({ query: { kind: 'audio', id: q.id, name } });
  } catch (err) {
    const reason = err.status >= 400 && err.status < 500 && err.status !== 429 && err.detail
      ? sentence(detailText(err.detail))
      : sentence(err.message);
    const text = `Could not use ${name}: ${reason}`;
    feedback('audio-feedback', text, 'error');
    if (panelHidden()) showError(text);
  }
}

function bindFiles(store) {
  $('audio-file').addEventListener('change', (e) => {
    const file = e.target.files[0];
    if (file) useSound(store, file, file.name);
    e.target.value = ''; // choosing the same file again still counts
  });

  // Files may be dropped anywhere: without this the browser would open the file and leave.
  const overlay = $('drop-overlay');
  const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes('Files');
  let depth = 0;
  document.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    depth += 1;
    overlay.hidden = false;
    $('dropzone').classList.add('is-over');
  });
  document.addEventListener('dragleave', (e) => {
    if (!hasFiles(e)) return;
    depth = Math.max(0, depth - 1);
    if (!depth) {
      overlay.hidden = true;
      $('dropzone').classList.remove('is-over');
    }
  });
  document.addEventListener('dragover', (e) => {
    if (hasFiles(e)) e.preventDefault();
  });
  document.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    $('dropzone').classList.remove('is-over');
    const file = e.dataTransfer.files[0];
    if (file) useSound(store, file, file.name);
  });
}

function bindRecorder(store, maxSeconds) {
  const button = $('record');
  const status = $('record-status');
  if (!canRecord()) {
    button.disabled = true;
    status.textContent = 'Recording needs a browser with microphone access over https.';
    return;
  }
  let session = null;
  const finish = async (wavPromise) => {
    session = null;
    button.setAttribute('aria-pressed', 'false');
    button.textContent = 'Record from microphone';
    status.textContent = '';
    try {
      const wav = await wavPromise;
      await useSound(store, wav, 'recording.wav');
    } catch (err) {
      showError(`Could not use the recording: ${err.message}`);
    }
  };
  button.addEventListener('click', async () => {
    if (session) {
      finish(session.stop());
      return;
    }
    clearError();
    try {
      session = await startRecording(maxSeconds, finish);
    } catch (err) {
      showError(`The microphone is not available: ${err.message}`);
      return;
    }
    button.setAttribute('aria-pressed', 'true');
    button.textContent = 'Stop and map it';
    status.textContent = `Recording… (at most ${maxSeconds} s)`;
  });
}

/** What the text box's length means for the map, in words ('' when nothing to say). */
function lengthNote(length, limit) {
  if (length <= limit) return '';
  return `${length.toLocaleString('en')} characters: the map reads at most ${limit}, `
    + `so only the first ${limit} will be used.`;
}

/** Wire the text box, examples, file upload, drag-and-drop and microphone. */
export function bindQueryInputs(store, info) {
  buildExamples(store);
  const limit = info.limits.text_chars;
  const box = $('query-text');
  box.addEventListener('input', () => {
    feedback('query-feedback', lengthNote(box.value.length, limit));
  });
  $('query-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const raw = box.value.trim();
    if (!raw) {
      // "   " passes the box's `required`; an empty map would be no answer at all.
      feedback('query-feedback', 'Type a few words about the sound first, e.g. “birds singing”.', 'error');
      box.focus();
      return;
    }
    const text = raw.slice(0, limit).trim();
    feedback(
      'query-feedback',
      raw.length > limit
        ? `Mapped the first ${limit} of ${raw.length.toLocaleString('en')} characters.`
        : '',
    );
    clearError();
    store.set({ query: { kind: 'text', text } });
  });
  bindFiles(store);
  // Long recordings only cost upload time: 30 s tells the model plenty.
  bindRecorder(store, Math.min(30, info.limits.audio_seconds));
}

/** Show the active query in the header and keep the text box in step with it. */
export function reflectQuery(state, status) {
  const q = state.query;
  $('active-query-kind').textContent = q && q.kind === 'audio' ? 'sound' : '';
  $('active-query-text').textContent = q ? (q.kind === 'audio' ? q.name : `“${q.text}”`) : 'nothing yet';
  $('active-query-meta').textContent = status || '';
  if (document.activeElement !== $('query-text')) {
    // A sound replaces the words: the box no longer shows text that is not being mapped.
    if (q && q.kind === 'text') $('query-text').value = q.text;
    else if (q && q.kind === 'audio') $('query-text').value = '';
  }
  if (q && q.kind === 'text') feedback('audio-feedback', '');
  document.body.dataset.queryKind = q ? q.kind : '';
}

/** The server's hint about the active query ("This sound is unfamiliar…"), or none. */
export function showHint(hint, familiarity) {
  const el = $('query-hint');
  el.textContent = hint || '';
  el.hidden = !hint;
  el.dataset.familiarity = familiarity || '';
  document.body.dataset.familiarity = familiarity || '';
}
