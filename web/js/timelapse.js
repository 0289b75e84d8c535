// The time-lapse: play the map through the 24 hours of the day, as the paper's temporally
// dynamic maps. Each hour's tiles are loaded out of sight a few frames ahead and a frame is
// shown only when its tiles are in, so the animation never flashes an empty map; on slow
// servers it simply runs slower.

const FRAME_MS = 900; // long enough to read the hour and see the change
const AHEAD = 3; // hours preloaded ahead of the one on screen

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class TimeLapse {
  /**
   * @param {object} store the state store (hour lives there)
   * @param {(hours: number[]) => Promise<void>} prepare loads the given hours' tiles out of
   *   sight (first one awaited) and keeps them loaded
   * @param {number[]} hourRange [first, last] hour of the vocabulary
   * @param {() => void} onPause called when playing stops
   */
  constructor(store, prepare, hourRange, onPause) {
    this.store = store;
    this.prepare = prepare;
    this.onPause = onPause;
    [this.h0, this.h1] = hourRange;
    this.playing = false;
    this.button = document.getElementById('play');
    this.button.addEventListener('click', () => (this.playing ? this.pause() : this.play()));
  }

  next(hour) {
    return hour === null || hour >= this.h1 ? this.h0 : hour + 1;
  }

  play() {
    if (this.playing) return;
    this.playing = true;
    this.store.set({ playing: true });
    this.render();
    this.run();
  }

  pause() {
    if (!this.playing) return;
    this.playing = false;
    this.store.set({ playing: false });
    this.render();
    this.onPause();
  }

  render() {
    this.button.setAttribute('aria-pressed', String(this.playing));
    this.button.textContent = this.playing ? '❚❚ Pause' : '▶ Play';
    this.button.setAttribute('aria-label', this.playing ? 'Pause the time-lapse' : 'Play the 24 hours');
    document.body.dataset.playing = String(this.playing);
  }

  async run() {
    while (this.playing) {
      const started = performance.now();
      const ahead = [];
      let h = this.store.get().hour;
      for (let i = 0; i < AHEAD; i += 1) ahead.push((h = this.next(h)));
      try {
        await this.prepare(ahead);
      } catch {
        // a failed preload shows up as tile errors; keep the animation going
      }
      await sleep(Math.max(0, FRAME_MS - (performance.now() - started)));
      if (!this.playing) break;
      this.store.set({ hour: ahead[0] });
    }
  }
}
