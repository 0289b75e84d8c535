// Recording a query from the microphone. Browsers record compressed WebM/Opus, which the server
// does not read, so the recording is decoded by the browser and sent as a 16-bit mono WAV.

/** Whether this browser lets the page record (needs https or localhost, and the APIs). */
export function canRecord() {
  return Boolean(
    window.isSecureContext && navigator.mediaDevices?.getUserMedia && window.MediaRecorder,
  );
}

/** A 16-bit PCM WAV file of mono float samples in [-1, 1]. */
export function encodeWav(samples, sampleRate) {
  const bytes = 44 + samples.length * 2;
  const view = new DataView(new ArrayBuffer(bytes));
  const text = (offset, s) => {
    for (let i = 0; i < s.length; i += 1) view.setUint8(offset + i, s.charCodeAt(i));
  };
  text(0, 'RIFF');
  view.setUint32(4, bytes - 8, true);
  text(8, 'WAVE');
  text(12, 'fmt ');
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * 2, true); // bytes per second
  view.setUint16(32, 2, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  text(36, 'data');
  view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i += 1) {
    const v = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + i * 2, v < 0 ? v * 0x8000 : v * 0x7fff, true);
  }
  return new Blob([view.buffer], { type: 'audio/wav' });
}

async function toWav(blob) {
  const ctx = new AudioContext();
  try {
    const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
    const mono = new Float32Array(audio.length);
    for (let c = 0; c < audio.numberOfChannels; c += 1) {
      const ch = audio.getChannelData(c);
      for (let i = 0; i < ch.length; i += 1) mono[i] += ch[i] / audio.numberOfChannels;
    }
    return encodeWav(mono, audio.sampleRate);
  } finally {
    ctx.close();
  }
}

/**
 * Start recording; resolves to {stop} once the microphone is open. `stop()` resolves to a WAV
 * Blob. Recording stops by itself after `maxSeconds` and then calls `onAutoStop(promise)`.
 */
export async function startRecording(maxSeconds, onAutoStop) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recorder.addEventListener('dataavailable', (e) => {
    if (e.data.size) chunks.push(e.data);
  });
  const stopped = new Promise((resolve) => recorder.addEventListener('stop', resolve));
  recorder.start();
  let result = null;
  const stop = () => {
    if (!result) {
      clearTimeout(timer);
      if (recorder.state !== 'inactive') recorder.stop();
      result = stopped.then(() => {
        for (const track of stream.getTracks()) track.stop();
        return toWav(new Blob(chunks, { type: recorder.mimeType }));
      });
    }
    return result;
  };
  const timer = setTimeout(() => onAutoStop(stop()), maxSeconds * 1000);
  return { stop };
}
