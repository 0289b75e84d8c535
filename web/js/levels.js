// Which PSM level serves which web zoom. The server answers 404 for a tile at a zoom its level
// cannot serve, and a 404 tile is a broken image and a console error, so the page asks only for
// tiles that exist. These rules mirror embeddings_store/grid.py (web_zoom_range,
// level_for_web_zoom); /api/info gives each level's tile_zoom and cells_per_tile.

const MAX_CHUNK_SPAN_LOG2 = 2; // a tile spans at most 4 x 4 store chunks
const TILE_PX_LOG2 = 8; // ... and at most 256 x 256 cells
const MAX_MAGNIFY_LOG2 = 6; // a cell is drawn at most 64 x 64 pixels

function cellZoom(level) {
  return level.tile_zoom + Math.round(Math.log2(level.cells_per_tile));
}

function minWebZoom(level) {
  return Math.max(level.tile_zoom - MAX_CHUNK_SPAN_LOG2, cellZoom(level) - TILE_PX_LOG2);
}

/** Web zooms [lo, hi] a fixed PSM level can be drawn at. */
export function levelZoomRange(level) {
  return [Math.max(minWebZoom(level), 0), Math.min(cellZoom(level) + MAX_MAGNIFY_LOG2, 24)];
}

/** The level the server picks for web zoom z when none is asked for (null if none can). */
export function autoLevel(levels, z) {
  const usable = levels.filter((lv) => z >= minWebZoom(lv));
  if (!usable.length) return null;
  // Finest cells first; among equal cells the smaller PSM zoom (the server's tie-break).
  usable.sort((a, b) => cellZoom(b) - cellZoom(a) || a.psm_zoom - b.psm_zoom);
  return usable[0];
}

/** The level drawn at web zoom z for the level setting ('auto' or a PSM zoom). */
export function levelAt(levels, setting, z) {
  if (setting === 'auto') return autoLevel(levels, Math.round(z));
  return levels.find((lv) => lv.psm_zoom === Number(setting)) || null;
}
