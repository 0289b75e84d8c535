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

/** {name, admin1, country_code} -> "Tallahassee, Florida, US" (null -> ''). */
export function formatPlace(place) {
  if (!place) return '';
  return [place.name, place.admin1, place.country_code].filter(Boolean).join(', ');
}

/** A place in words: "near Tallahassee, Florida, US", or its coordinates when it has no name. */
export function describePlace(place, lat, lon) {
  return place ? `near ${formatPlace(place)}` : formatLatLon(lat, lon);
}

/** How likely a sound is at a place, in words, from its rank (percentile 0..100) on the map. */
export function likelihoodWords(percentile) {
  if (percentile === null || percentile === undefined || !Number.isFinite(percentile)) return null;
  if (percentile >= 90) return 'Very likely here';
  if (percentile >= 70) return 'Likely here';
  if (percentile >= 40) return 'Possible here';
  if (percentile >= 15) return 'Unlikely here';
  return 'Very unlikely here';
}

/** A rank on the map in words: "better than 93 % of places on this map". */
export function rankWords(percentile) {
  if (percentile === null || percentile === undefined || !Number.isFinite(percentile)) return '';
  if (percentile >= 99.5) return 'among the best places on this map';
  if (percentile < 0.5) return 'among the least likely places on this map';
  return `better than ${Math.round(percentile)} % of places on this map`;
}

/** Both ends of a probability range in percent, with enough decimals to tell them apart. */
export function formatPercentRange(lo, hi) {
  const [a, b] = formatRange(lo * 100, hi * 100);
  return [`${a} %`, `${b} %`];
}
