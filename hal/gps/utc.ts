// The receiver's UTC date and time as gpsd keeps it between sentences.
// NMEA splits time across sentences: RMC carries ddmmyy (a two-digit year),
// ZDA a four-digit year, GGA and GLL only hhmmss. gpsd keeps one running
// date that each sentence updates in part, and turns it into a time when a
// sentence says "this is the fix time"; these are its rules.

/** gpsd's running receiver date. year 0 and day 0 mean "no date seen yet". */
export interface ReceiverDate {
  /** Full year, or 0 before any RMC or ZDA. */
  year: number;
  /** 1..12 */
  month: number;
  /** 1..31, 0 before any date. */
  day: number;
  hour: number;
  minute: number;
  second: number;
  /** Fraction of the second of the last time merged, nanoseconds. */
  nanos: number;
}

export function emptyReceiverDate(): ReceiverDate {
  return { year: 0, month: 1, day: 0, hour: 0, minute: 0, second: 0, nanos: 0 };
}

/** 2017-01-01T00:00:00Z, when the 18th leap second (GPS − UTC = 18 s) took effect. */
const LEAP_18_FROM_S = 1483228800;
const GPS_WEEKS_1024_S = 1024 * 7 * 86400;
/** Leap seconds (GPS − UTC) gpsd assumes until a receiver says otherwise. */
export const DEFAULT_LEAP_SECONDS = 18;

const CUMULATIVE_DAYS = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];

/**
 * Seconds since the Unix epoch of a broken-down UTC date, or -1 when a part
 * is out of range (hour 24, minute 60, second 62, day 0 or 32). Days past
 * the end of a month roll into the next (31 February is 3 March), as
 * gpsd's mkgmtime does.
 */
export function utcSeconds(d: ReceiverDate): number {
  const monthIndex = d.month - 1;
  if (d.second < 0 || d.second > 61 || d.minute < 0 || d.minute > 59 || d.hour < 0 || d.hour > 23) return -1;
  if (d.day < 1 || d.day > 31 || monthIndex < 0 || monthIndex > 11 || d.year < 1900) return -1;
  const year = d.year;
  let days = (year - 1970) * 365 + (CUMULATIVE_DAYS[monthIndex] as number);
  days += Math.trunc((year - 1968) / 4);
  days -= Math.trunc((year - 1900) / 100);
  days += Math.trunc((year - 1600) / 400);
  if (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) && monthIndex < 2) days--;
  days += d.day - 1;
  return ((days * 24 + d.hour) * 60 + d.minute) * 60 + d.second;
}

/** How the running date becomes a fix time. */
export interface TimeContext {
  /**
   * True when the date of the capture is known from outside (gpsd's
   * regression logs carry a '# Date: yyyy-mm-dd' comment): dates are then
   * taken as the receiver sends them.
   */
  captureDated: boolean;
  /** GPS − UTC leap seconds as last reported (Garmin $PGRMF), else DEFAULT_LEAP_SECONDS. */
  leapSeconds: number;
}

/**
 * The fix time of the running date, in whole seconds since the epoch (its
 * fraction is d.nanos); ≤ 0 when the date is unusable. Live (no capture date), a date before 2017
 * while the receiver knows of 18 leap seconds cannot be right: it is the
 * GPS week-number rollover bug (the receiver counts weeks from the previous
 * 1024-week epoch, e.g. Telit firmware after April 2019), so 1024 weeks are
 * added and the running date repaired, as gpsd does.
 */
export function fixTimeSeconds(d: ReceiverDate, ctx: TimeContext): number {
  if (d.year === 0 && d.day === 0) return 0;
  let s = utcSeconds(d);
  if (!ctx.captureDated && ctx.leapSeconds > 17 && s > 0 && s < LEAP_18_FROM_S) {
    s += GPS_WEEKS_1024_S;
    const fixed = new Date(s * 1000);
    d.year = fixed.getUTCFullYear();
    d.month = fixed.getUTCMonth() + 1;
    d.day = fixed.getUTCDate();
    d.hour = fixed.getUTCHours();
    d.minute = fixed.getUTCMinutes();
    d.second = fixed.getUTCSeconds();
  }
  return s;
}

/** Milliseconds since the epoch, rounded to the millisecond as gpsd prints it; null when there is no time. */
export function fixTimeMs(seconds: number, nanos: number): number | null {
  if (seconds <= 0) return null;
  return seconds * 1000 + Math.floor((nanos + 500_000) / 1_000_000);
}
