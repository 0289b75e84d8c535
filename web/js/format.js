// Numbers and places as people read them.

export const MONTHS = [
  'January', 'February', 'March', 'April', 'May', 'June',
  'July', 'August', 'September', 'October', 'November', 'December',
];

/** A value with about four significant digits (scores span small and large magnitudes). */
export function formatNumber(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  if (a !== 0 && (a < 0.001 || a >= 1e6)) return v.toExponential(3);
  const digits = a >= 1000 ? 1 : a >= 100 ? 2 : 3;
  return v.toFixed(digits);
}

/** A probability as a percentage. */
export function formatPercent(p) {
  if (p === null || p === undefined || !Number.isFinite(p)) return '—';
  return `${(p * 100).toFixed(1)} %`;
}

/** 37.12345, -98.4 -> "37.123° N, 98.400° W". */
export function formatLatLon(lat, lon) {
  const ns = lat >= 0 ? 'N' : 'S';
  const ew = lon >= 0 ? 'E' : 'W';
  return `${Math.abs(lat).toFixed(3)}° ${ns}, ${Math.abs(lon).toFixed(3)}° ${ew}`;
}

/** 7 -> "07:00". */
export function formatHour(h) {
  return `${String(h).padStart(2, '0')}:00`;
}

/** Both ends of a range, with enough decimals to tell them apart (maps can span 0.002). */
export function formatRange(lo, hi) {
  const span = Math.abs(hi - lo);
  if (!Number.isFinite(span) || span === 0) return [formatNumber(lo), formatNumber(hi)];
  const decimals = Math.min(8, Math.max(0, Math.ceil(-Math.log10(span)) + 2));
  return [lo.toFixed(decimals), hi.toFixed(decimals)];
}
