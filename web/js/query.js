// Asking the map a question: the text box with its examples, sound files (picker and
// drag-and-drop anywhere on the page), and the microphone. Text goes into the state as text
// (main.js registers it); a sound is uploaded here and goes into the state as its query id.

import { registerAudio } from './api.js';
import { canRecord, startRecording } from './record.js';
import { clearError, showError } from './status.js';

const $ = (id) => document.getElementById(id);

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
      store.set({ query: { kind: 'text', text } });
    });
    li.append(btn);
    $('examples').append(li);
  }
}

/** Upload a sound and make it the active query. */
async function useSound(store, blob, name) {
  clearError();
  $('record-status').textContent = `Uploading ${name}…`;
  try {
    const q = await registerAudio(blob, name);
    store.set({ query: { kind: 'audio', id: q.id, name } });
    $('record-status').textContent = '';
  } catch (err) {
    $('record-status').textContent = '';
    showError(err.message);
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

/** Wire the text box, examples, file upload, drag-and-drop and microphone. */
export function bindQueryInputs(store, info) {
  buildExamples(store);
  $('query-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('query-text').value.trim();
    if (!text) return;
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
  if (q && q.kind === 'text' && document.activeElement !== $('query-text')) {
    $('query-text').value = q.text;
  }
  document.body.dataset.queryKind = q ? q.kind : '';
}
