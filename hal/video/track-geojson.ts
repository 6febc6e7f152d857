// The sidecar of a clip: where the bus went while it was filmed, as GeoJSON
// (RFC 7946): a LineString of the track with its times ("coordTimes", as
// togeojson and most GPX converters write them) and a Point where the alarm
// was raised (or the footage asked for). Positions are [lon, lat(, alt)].

export interface GeoPoint {
  lat: number;
  lon: number;
  /** Metres above mean sea level, when the fix has it. */
  altM?: number;
}

export interface TrackPoint extends GeoPoint {
  /** Wall-clock UTC ms of the fix. */
  t: number;
}

export function isValidGeoPoint(p: GeoPoint): boolean {
  return Number.isFinite(p.lat) && Number.isFinite(p.lon) && Math.abs(p.lat) <= 90 && Math.abs(p.lon) <= 180 && (p.altM === undefined || Number.isFinite(p.altM));
}

/** RFC 7946 §11.2: six decimals (about 10 cm) is all the precision a position needs. */
function position(p: GeoPoint): number[] {
  const pos = [round(p.lon, 6), round(p.lat, 6)];
  if (p.altM !== undefined) pos.push(round(p.altM, 1));
  return pos;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export interface ClipTrackOptions {
  track: readonly TrackPoint[];
  fromMs: number;
  toMs: number;
  /** The point the clip is about: the fix at the press, or the requested place. */
  location?: GeoPoint | null;
  /** When that point was taken (the press). */
  pointMs?: number;
  /** 'press' for an alarm clip, 'request' for footage on request. */
  pointRole: 'press' | 'request';
  /** Foreign members of the collection (clip file, checksum, gaps…). */
  properties?: Record<string, unknown>;
}

/**
 * The track over [fromMs, toMs], plus the last fix before and the first
 * after, so the line spans the whole clip. Invalid points are dropped.
 */
export function clipTrackGeoJson(o: ClipTrackOptions): Record<string, unknown> {
  const valid = o.track.filter((p) => Number.isFinite(p.t) && isValidGeoPoint(p)).sort((a, b) => a.t - b.t);
  const firstIn = valid.findIndex((p) => p.t >= o.fromMs);
  let lastIn = -1;
  for (let i = 0; i < valid.length; i++) if (valid[i]!.t <= o.toMs) lastIn = i;
  let from = firstIn === -1 ? valid.length : firstIn;
  let to = lastIn;
  if (from > 0) from--;
  if (to < valid.length - 1) to++;
  const points = from <= to ? valid.slice(from, to + 1) : [];

  const features: Record<string, unknown>[] = [];
  const times = points.map((p) => new Date(p.t).toISOString());
  if (points.length >= 2) {
    features.push({
      type: 'Feature',
      geometry: { type: 'LineString', coordinates: points.map(position) },
      properties: { role: 'track', coordTimes: times },
    });
  } else if (points.length === 1) {
    // A LineString needs two positions (RFC 7946 §3.1.4).
    features.push({ type: 'Feature', geometry: { type: 'Point', coordinates: position(points[0]!) }, properties: { role: 'track', time: times[0] } });
  }
  if (o.location && isValidGeoPoint(o.location)) {
    features.push({
      type: 'Feature',
      geometry: { type: 'Point', coordinates: position(o.location) },
      properties: { role: o.pointRole, ...(o.pointMs !== undefined ? { time: new Date(o.pointMs).toISOString() } : {}) },
    });
  }
  return {
    type: 'FeatureCollection',
    features,
    busguard: { fromMs: o.fromMs, toMs: o.toMs, trackPoints: points.length, ...o.properties },
  };
}
