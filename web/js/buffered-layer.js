// A tile layer that changes its URL without flashing. Leaflet's setUrl() drops the old tiles at
// once and the map goes blank until the new ones arrive; here the new map loads invisibly
// underneath and replaces the old one only when its tiles are in. The same mechanism preloads
// the next hours of the time-lapse, so each frame is already there when it is shown.

import * as L from '/vendor/leaflet/leaflet-src.esm.js';
import { activity } from './status.js';

/** Resolves when `layer` has no tile left to load in the current view. */
function whenLoaded(layer) {
  return new Promise((resolve) => {
    // Adding a layer queues its tiles synchronously, so isLoading() is already true if any are
    // on their way; a layer with nothing to load (outside its zooms or bounds) never fires load.
    if (!layer.isLoading()) resolve();
    else layer.once('load', () => resolve());
  });
}

export class BufferedTileLayer {
  /**
   * @param {L.Map} map
   * @param {object} options pane, className (marks the layer's container), bounds,
   *   onTileError(), keep (hidden layers kept ready, e.g. recent hours). The layer starts
   *   hidden: show() puts it on the map.
   */
  constructor(map, { pane, className, bounds, onTileError, keep = 3 }) {
    this.map = map;
    this.pane = pane;
    this.className = className;
    this.bounds = bounds;
    this.onTileError = onTileError || (() => {});
    this.keep = keep;
    this.entries = new Map(); // url -> {url, layer, used}
    this.current = null; // the entry on screen
    this.wanted = null; // the entry asked for last (current once loaded)
    this.pinned = new Set(); // urls kept while a time-lapse needs them
    this.opacity = 1;
    this.visible = false;
  }

  _entry(url, options) {
    let e = this.entries.get(url);
    if (!e) {
      const layer = L.tileLayer(url, {
        pane: this.pane,
        className: this.className,
        bounds: this.bounds,
        opacity: 0,
        ...options,
      });
      e = { url, layer, used: 0 };
      let done = null;
      layer.on('loading', () => {
        if (!done) done = activity();
      });
      const finish = () => {
        if (done) done();
        done = null;
      };
      layer.on('load', finish);
      layer.on('remove', finish);
      layer.on('tileerror', () => this.onTileError());
      layer.on('add', () => {
        layer.getContainer().dataset.url = url;
      });
      this.entries.set(url, e);
      layer.addTo(this.map);
    }
    e.used = performance.now();
    return e;
  }

  /** Show the map at `url` (a Leaflet URL template) once its tiles are loaded. */
  show(url, options = {}) {
    this.visible = true;
    const e = this._entry(url, options);
    this.wanted = e;
    return whenLoaded(e.layer).then(() => {
      if (this.wanted === e && this.entries.get(url) === e) this._makeCurrent(e);
    });
  }

  /** Load `url` out of sight; resolves when its tiles for this view are in. */
  preload(url, options = {}) {
    if (!this.visible) return Promise.resolve();
    return whenLoaded(this._entry(url, options).layer);
  }

  /** Keep these urls loaded (the time-lapse's frames ahead); others may be dropped. */
  pin(urls) {
    this.pinned = new Set(urls);
    this._evict();
  }

  _makeCurrent(e) {
    const old = this.current;
    this.current = e;
    e.layer.setOpacity(this.opacity);
    e.layer.getContainer().classList.add('is-current');
    if (old && old !== e && old.layer.getContainer()) {
      old.layer.setOpacity(0);
      old.layer.getContainer().classList.remove('is-current');
    }
    this._evict();
  }

  // Hidden layers still follow every pan and zoom, so only a few are kept.
  _evict() {
    const hidden = [...this.entries.values()]
      .filter((e) => e !== this.current && e !== this.wanted && !this.pinned.has(e.url))
      .sort((a, b) => b.used - a.used);
    for (const e of hidden.slice(this.keep)) {
      this.map.removeLayer(e.layer);
      this.entries.delete(e.url);
    }
  }

  setOpacity(opacity) {
    this.opacity = opacity;
    if (this.current) this.current.layer.setOpacity(opacity);
  }

  /** Take the layer off the map (tiles stay in the browser cache); show() brings it back. */
  hide() {
    this.visible = false;
    this.clear();
  }

  /** Remove everything from the map. */
  clear() {
    for (const e of this.entries.values()) this.map.removeLayer(e.layer);
    this.entries.clear();
    this.current = null;
    this.wanted = null;
  }
}
