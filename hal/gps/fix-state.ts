// The fix as it is built up during a reporting cycle, and the "what did this
// sentence set" bits that say which parts of a sentence's contribution are
// merged into it. This is gpsd's model (struct gps_fix_t, the *_SET masks,
// gps_merge_fix), kept because agreeing with gpsd on when a position counts
// depends on exactly which sentence may overwrite what.

/** What a sentence set (gpsd's gps_mask_t bits, only those the NMEA rules use). */
export const SET = {
  ONLINE: 1 << 0,
  TIME: 1 << 1,
  LATLON: 1 << 2,
  ALTITUDE: 1 << 3,
  SPEED: 1 << 4,
  TRACK: 1 << 5,
  CLIMB: 1 << 6,
  STATUS: 1 << 7,
  MODE: 1 << 8,
  DOP: 1 << 9,
  HERR: 1 << 10,
  VERR: 1 << 11,
  ATTITUDE: 1 << 12,
  SATELLITE: 1 << 13,
  USED: 1 << 14,
  GST: 1 << 15,
  MAGNETIC_TRACK: 1 << 16,
  NAVDATA: 1 << 17,
  VNED: 1 << 18,
  OSCILLATOR: 1 << 19,
  ERROR: 1 << 20,
  DEVICEID: 1 << 21,
  PERR: 1 << 22,
  /** The sentence starts a new reporting cycle: forget the previous fix. */
  CLEAR: 1 << 23,
  /** The sentence ends a reporting cycle: report the fix now. */
  REPORT: 1 << 24,
} as const;

/** gpsd's fix modes. 0 is "no mode seen yet in this cycle". */
export const MODE_NOT_SEEN = 0;
export const MODE_NO_FIX = 1;
export const MODE_2D = 2;
export const MODE_3D = 3;

/** gpsd's fix status values (only DGPS changes anything here: the error estimate). */
export const STATUS = { UNK: 0, GPS: 1, DGPS: 2, RTK_FIX: 3, RTK_FLT: 4, DR: 5, GNSSDR: 6, TIME: 7, SIM: 8, PPS_FIX: 9 } as const;

/** A fix under construction. Unknown numbers are NaN, as in gpsd, so merging is a plain copy. */
export interface FixState {
  /** UTC seconds since the epoch; ≤ 0 when there is no time. */
  timeS: number;
  timeNs: number;
  lat: number;
  lon: number;
  mode: number;
  status: number;
  altHAE: number;
  altMSL: number;
  /** Geoid height above the ellipsoid, metres, when the receiver says. */
  geoidSep: number;
  speed: number;
  track: number;
  magneticTrack: number;
  magneticVar: number;
  climb: number;
  velN: number;
  velE: number;
  velD: number;
  /** Error estimates, metres (95 %). */
  epx: number;
  epy: number;
  epv: number;
  eph: number;
  sep: number;
}

export function emptyFix(): FixState {
  return {
    timeS: 0,
    timeNs: 0,
    lat: NaN,
    lon: NaN,
    mode: MODE_NOT_SEEN,
    status: STATUS.UNK,
    altHAE: NaN,
    altMSL: NaN,
    geoidSep: NaN,
    speed: NaN,
    track: NaN,
    magneticTrack: NaN,
    magneticVar: NaN,
    climb: NaN,
    velN: NaN,
    velE: NaN,
    velD: NaN,
    epx: NaN,
    epy: NaN,
    epv: NaN,
    eph: NaN,
    sep: NaN,
  };
}

/** Reset in place (one sentence's contribution is cleared for every sentence; no allocation). */
export function clearFix(f: FixState): void {
  f.timeS = 0;
  f.timeNs = 0;
  f.lat = f.lon = NaN;
  f.mode = MODE_NOT_SEEN;
  f.status = STATUS.UNK;
  f.altHAE = f.altMSL = f.geoidSep = NaN;
  f.speed = f.track = f.magneticTrack = f.magneticVar = f.climb = NaN;
  f.velN = f.velE = f.velD = NaN;
  f.epx = f.epy = f.epv = f.eph = f.sep = NaN;
}

/** Whether the fix knows an altitude, above the ellipsoid or the geoid. */
export function hasAltitude(f: FixState): boolean {
  return !Number.isNaN(f.altHAE) || !Number.isNaN(f.altMSL);
}

/**
 * Merge one sentence's contribution into the cycle's fix: the parts named in
 * `set` are copied; error estimates and the geoid height whenever the
 * sentence has them; the status only ever goes up within a cycle (gpsd's
 * gps_merge_fix).
 */
export function mergeFix(to: FixState, set: number, from: FixState): void {
  if (set & SET.TIME) {
    to.timeS = from.timeS;
    to.timeNs = from.timeNs;
  }
  if (set & SET.LATLON) {
    to.lat = from.lat;
    to.lon = from.lon;
  }
  if (set & SET.MODE) to.mode = from.mode;
  if (set & SET.STATUS && to.status < from.status) to.status = from.status;
  if (set & SET.ALTITUDE) {
    if (!Number.isNaN(from.altHAE)) to.altHAE = from.altHAE;
    if (!Number.isNaN(from.altMSL)) to.altMSL = from.altMSL;
  }
  if (set & SET.TRACK) to.track = from.track;
  if (set & SET.MAGNETIC_TRACK) {
    if (!Number.isNaN(from.magneticTrack)) to.magneticTrack = from.magneticTrack;
    if (!Number.isNaN(from.magneticVar)) to.magneticVar = from.magneticVar;
  }
  if (set & SET.SPEED) to.speed = from.speed;
  if (set & SET.CLIMB) to.climb = from.climb;
  if (!Number.isNaN(from.epx) && !Number.isNaN(from.epy)) {
    to.epx = from.epx;
    to.epy = from.epy;
  }
  if (!Number.isNaN(from.eph)) to.eph = from.eph;
  if (!Number.isNaN(from.sep)) to.sep = from.sep;
  if (!Number.isNaN(from.geoidSep)) to.geoidSep = from.geoidSep;
  if (!Number.isNaN(from.epv)) to.epv = from.epv;
  if (set & SET.VNED) {
    to.velN = from.velN;
    to.velE = from.velE;
    to.velD = from.velD;
  }
}
