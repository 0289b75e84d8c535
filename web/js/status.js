// The loading indicator and the error banner. Anything that waits on the server (a fetch, a tile
// layer filling the view) holds an "activity" while it runs; the indicator shows while any does.

let pending = 0;
let timer = null;

function render() {
  const busy = pending > 0;
  document.body.dataset.busy = String(busy);
  // A short delay keeps instant answers from flashing the indicator.
  clearTimeout(timer);
  const text = document.getElementById('loading-text');
  if (!text) return;
  if (busy) {
    timer = setTimeout(() => {
      document.getElementById('loading').classList.add('is-on');
      text.textContent = 'Loading…';
    }, 150);
  } else {
    document.getElementById('loading').classList.remove('is-on');
    text.textContent = '';
  }
}

/** Start an activity; call the returned function (once) when it ends. */
export function activity() {
  pending += 1;
  render();
  let open = true;
  return () => {
    if (!open) return;
    open = false;
    pending -= 1;
    render();
  };
}

/** Show a message in the alert banner (screen readers announce it). */
export function showError(message) {
  const box = document.getElementById('error');
  document.getElementById('error-text').textContent = message;
  box.hidden = false;
}

/** Hide the banner. */
export function clearError() {
  document.getElementById('error').hidden = true;
  document.getElementById('error-text').textContent = '';
}

/** Wire the banner's close button. */
export function initStatus() {
  document.getElementById('error-close').addEventListener('click', clearError);
  render();
}
