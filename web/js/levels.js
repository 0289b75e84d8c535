// Which PSM level serves which web zoom. The server answers 404 for a tile at a zoom its level
// cannot serve, and a 404 tile is a broken image and a console error, so the page asks only for
// tiles that exist. The server states its rules in /api/info (embeddings_store/grid.py computes
// them): each level's `web_zooms` when it is asked for by name, and `auto_levels`, the runs of
// web zooms each level serves when no level is named.

/** Web zooms [lo, hi] a fixed PSM level can be drawn at. */
export function levelZoomRange(level) {
  return level.web_zooms;
}

/** The level the server picks for web zoom z when none is asked for (null if none can). */
export function autoLevel(info, z) {
  const run = info.auto_levels.find((r) => r.web_zooms[0] <= z && z <= r.web_zooms[1]);
  return run ? info.store.levels.find((lv) => lv.psm_zoom === run.psm_zoom) || null : null;
}

/** The level drawn at web zoom z for the level setting ('auto' or a PSM zoom). */
export function levelAt(info, setting, z) {
  if (setting === 'auto') return autoLevel(info, Math.round(z));
  return info.store.levels.find((lv) => lv.psm_zoom === Number(setting)) || null;
}

// Past a level's detail its cells grow into flat blocks of colour that hide the imagery and the
// place names: from one web zoom after its tile zoom (cells of 32 px and more) the heatmap fades,
// down to FADE_FLOOR at FADE_FULL_ZOOM and beyond.
export const FADE_FLOOR = 0.35;
export const FADE_FULL_ZOOM = 13;

/** Largest heatmap opacity at web zoom z for a level ({tile_zoom}); 1 = no fading. */
export function fadeCap(level, z) {
  if (!level) return 1;
  const start = level.tile_zoom + 1;
  const end = Math.max(FADE_FULL_ZOOM, start + 1);
  if (z <= start) return 1;
  if (z >= end) return FADE_FLOOR;
  return 1 - ((1 - FADE_FLOOR) * (z - start)) / (end - start);
}
