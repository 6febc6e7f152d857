// NMEA 0183 sentence parser: RMC and GGA only, everything else is 'other'.
// Pure functions, no I/O; never throws and never lets NaN through, because a
// receiver's serial stream is untrusted input (line noise, wrong baud rate,
// cold-boot junk).

export interface UtcDate {
  year: number;
  /** 1..12 */
  month: number;
  /** 1..31 */
  day: number;
}

export interface RmcSentence {
  type: 'RMC';
  talker: string;
  /** UTC milliseconds since midnight; null when the receiver sent an empty time field. */
  timeOfDayMs: number | null;
  /** 'A' data valid, 'V' navigation receiver warning. */
  status: 'A' | 'V';
  /** NMEA 2.3+ FAA mode indicator (A, D, E, F, M, N, P, R, S), null before 2.3. */
  mode: string | null;
  lat: number | null;
  lon: number | null;
  speedMps: number | null;
  trackDeg: number | null;
  date: UtcDate | null;
}

export interface GgaSentence {
  type: 'GGA';
  talker: string;
  timeOfDayMs: number | null;
  lat: number | null;
  lon: number | null;
  /** 0 invalid, 1 GPS, 2 DGPS, 3 PPS, 4 RTK, 5 float RTK, 6 dead reckoning, 7 manual, 8 simulator. */
  quality: number;
  sats: number | null;
  hdop: number | null;
  /** Antenna altitude above mean sea level, metres. */
  altM: number | null;
}

export interface OtherSentence {
  type: 'other';
  /** Two-letter talker, or 'P' for proprietary sentences ($PGRME, $PSRFEPE...). */
  talker: string;
  /** Sentence formatter ('GSV', 'ZDA') or the proprietary address minus 'P' ('GRME'). */
  formatter: string;
}

export type ParsedSentence = RmcSentence | GgaSentence | OtherSentence;

export interface NmeaError {
  /** What failed, on which input, and what to check. */
  error: string;
  /** 'checksum' is counted apart: many of them at once usually mean a wrong baud rate or a noisy line. */
  kind: 'checksum' | 'framing' | 'field';
}

export const KNOTS_TO_MPS = 1852 / 3600;

/** True when parseSentence returned an error. */
export function isNmeaError(r: ParsedSentence | NmeaError): r is NmeaError {
  return 'error' in r;
}

export function nmeaChecksum(body: string): number {
  let sum = 0;
  for (let i = 0; i < body.length; i++) sum ^= body.charCodeAt(i);
  return sum;
}

/** Two upper-case hex digits, as NMEA 0183 writes the checksum. */
export function hex2(n: number): string {
  return n.toString(16).toUpperCase().padStart(2, '0');
}

export function parseSentence(line: string): ParsedSentence | NmeaError {
  const stripped = line.replace(/[\r\n]+$/, '');
  // A sentence starts at its '$'; bytes before the last '$' are the rest of a
  // sentence the receiver cut off or junk, as gpsd's lexer treats them
  // (corpus: ST Teseo LIV4F sends '$$GNRMC', iSync and Triton 400 start a new
  // sentence in the middle of a truncated one).
  const start = stripped.lastIndexOf('$');
  if (start < 0) {
    return { kind: 'framing', error: `NMEA line ${printable(stripped)}: no '$'; partial line after open or noise on the wire` };
  }
  const text = stripped.slice(start);
  const shown = printable(text);
  // NMEA 0183 sentences are printable ASCII (0x20..0x7E) only; anything else
  // is a wrong baud rate or a binary protocol (UBX, SiRF) on the port.
  if (!/^[\x20-\x7e]*$/.test(text)) {
    return { kind: 'framing', error: `NMEA line ${shown}: contains non-ASCII bytes; check the baud rate and that the receiver is in NMEA mode` };
  }
  // Receivers send the checksum; a line without one is far more often a
  // truncated line than a legitimate sentence, so it is required here.
  const star = text.lastIndexOf('*');
  const body = star < 0 ? text.slice(1) : text.slice(1, star);
  const expected = hex2(nmeaChecksum(body));
  if (star < 0 || star !== text.length - 3) {
    const got = star < 0 ? 'none' : `'${text.slice(star + 1)}'`;
    return { kind: 'checksum', error: `NMEA line ${shown}: no *hh checksum at the end, expected *${expected}, got ${got}; truncated line or receiver not sending checksums` };
  }
  const got = text.slice(star + 1).toUpperCase();
  if (got !== expected) {
    return { kind: 'checksum', error: `NMEA line ${shown}: checksum mismatch, expected ${expected}, got ${got}; line noise or a wrong baud rate` };
  }

  const fields = body.split(',');
  const address = fields[0] ?? '';
  // Proprietary sentences ('$P' + maker code) need not follow the address
  // layout: SiRF sends '$PSRFTXTVersion GSW3...' with no comma at all.
  if (address.startsWith('P') && address.length > 1) {
    return { type: 'other', talker: 'P', formatter: address.slice(1) };
  }
  const m = /^([A-Z]{2})([A-Z]{3})$/.exec(address);
  if (!m) {
    return { kind: 'framing', error: `NMEA line ${shown}: address field '${address}' is not a talker (2 letters) plus a formatter (3 letters)` };
  }
  const talker = m[1] as string;
  const formatter = m[2] as string;
  const f = fields.slice(1);
  try {
    if (formatter === 'RMC') return parseRmc(talker, f);
    if (formatter === 'GGA') return parseGga(talker, f);
  } catch (e) {
    // Only FieldError is expected; anything else is still reported, not thrown,
    // because a parser bug must not take the reader (and the alarm path) down.
    const why = e instanceof FieldError ? e.message : `parser fault ${String(e)}; please report this line`;
    return { kind: 'field', error: `NMEA ${talker}${formatter} ${shown}: ${why}` };
  }
  return { type: 'other', talker, formatter };
}

class FieldError extends Error {}

// RMC fields (NMEA 0183 v2.0, v2.3 adds 12 = mode, v4.1 adds 13 = nav status):
// 1 time, 2 status, 3 lat, 4 N/S, 5 lon, 6 E/W, 7 speed kn, 8 course true,
// 9 date ddmmyy, 10 magvar, 11 magvar E/W.
function parseRmc(talker: string, f: string[]): RmcSentence {
  if (f.length < 9) throw new FieldError(`has ${f.length} fields, RMC needs at least 9 (up to the date)`);
  const status = f[1];
  if (status !== 'A' && status !== 'V') throw new FieldError(`status '${status}' is neither A nor V`);
  const pos = position(f[2], f[3], f[4], f[5]);
  const knots = decimal(f[6], 'speed');
  if (knots !== null && knots < 0) throw new FieldError(`negative speed '${f[6]}'`);
  const course = decimal(f[7], 'course');
  if (course !== null && (course < 0 || course > 360)) throw new FieldError(`course '${f[7]}' outside 0..360`);
  const mode = f.length > 11 && f[11] !== '' ? (f[11] ?? null) : null;
  return {
    type: 'RMC',
    talker,
    timeOfDayMs: timeOfDay(f[0]),
    status,
    mode,
    lat: pos?.lat ?? null,
    lon: pos?.lon ?? null,
    speedMps: knots === null ? null : knots * KNOTS_TO_MPS,
    trackDeg: course === null ? null : course % 360,
    date: lenientDate(f[8]),
  };
}

// GGA fields: 1 time, 2 lat, 3 N/S, 4 lon, 5 E/W, 6 quality, 7 sats in use,
// 8 hdop, 9 altitude MSL, 10 'M', 11 geoid separation, 12 'M', 13 DGPS age, 14 station.
function parseGga(talker: string, f: string[]): GgaSentence {
  if (f.length < 9) throw new FieldError(`has ${f.length} fields, GGA needs at least 9 (up to the altitude)`);
  const pos = position(f[1], f[2], f[3], f[4]);
  const quality = integer(f[5], 'fix quality');
  if (quality === null) throw new FieldError('empty fix quality');
  const sats = integer(f[6], 'satellites in use');
  const hdop = decimal(f[7], 'hdop');
  if (hdop !== null && hdop < 0) throw new FieldError(`negative hdop '${f[7]}'`);
  return {
    type: 'GGA',
    talker,
    timeOfDayMs: timeOfDay(f[0]),
    lat: pos?.lat ?? null,
    lon: pos?.lon ?? null,
    quality,
    sats,
    hdop,
    altM: decimal(f[8], 'altitude'),
  };
}

const DECIMAL = /^[-+]?(\d+\.?\d*|\.\d+)$/;

function decimal(s: string | undefined, what: string): number | null {
  if (s === undefined || s === '') return null;
  if (!DECIMAL.test(s)) throw new FieldError(`${what} '${s}' is not a number`);
  return Number(s);
}

function integer(s: string | undefined, what: string): number | null {
  if (s === undefined || s === '') return null;
  if (!/^\d+$/.test(s)) throw new FieldError(`${what} '${s}' is not an unsigned integer`);
  return Number(s);
}

/** hhmmss[.sss] → milliseconds since UTC midnight. */
function timeOfDay(s: string | undefined): number | null {
  if (s === undefined || s === '') return null;
  const m = /^(\d\d)(\d\d)(\d\d(?:\.\d*)?)$/.exec(s);
  if (!m) throw new FieldError(`UTC time '${s}' is not hhmmss.sss`);
  const h = Number(m[1]);
  const min = Number(m[2]);
  const sec = Number(m[3]);
  // 60 is allowed: a leap second is announced as 23:59:60.
  if (h > 23 || min > 59 || sec >= 61) throw new FieldError(`UTC time '${s}' is out of range`);
  return Math.round(((h * 60 + min) * 60 + sec) * 1000);
}

// A bad date costs the time, not the position: Telit HE910 firmware sent
// year '-1' after the April 2019 GPS week rollover with a good position
// (gpsd corpus april6_2019.log), and gpsd too keeps the position then.
function lenientDate(s: string | undefined): UtcDate | null {
  try {
    return rmcDate(s);
  } catch {
    return null;
  }
}

/** ddmmyy → date. */
function rmcDate(s: string | undefined): UtcDate | null {
  if (s === undefined || s === '') return null;
  const m = /^(\d\d)(\d\d)(\d\d)$/.exec(s);
  if (!m) throw new FieldError(`date '${s}' is not ddmmyy`);
  const day = Number(m[1]);
  const month = Number(m[2]);
  const yy = Number(m[3]);
  if (month < 1 || month > 12 || day < 1 || day > 31) throw new FieldError(`date '${s}' is out of range`);
  // RMC carries a two-digit year; GPS began in 1980, so 80..99 are 19xx.
  return { year: yy >= 80 ? 1900 + yy : 2000 + yy, month, day };
}

/**
 * Latitude ddmm.mmmm / longitude dddmm.mmmm plus hemisphere into signed degrees.
 * Both empty (no fix yet) is "no position", not an error. Split on the string,
 * not with floor(v / 100): receivers send up to 8 decimals of minutes and the
 * float detour costs precision.
 */
function position(
  latS: string | undefined,
  ns: string | undefined,
  lonS: string | undefined,
  ew: string | undefined,
): { lat: number; lon: number } | null {
  const empty = (x: string | undefined) => x === undefined || x === '';
  if (empty(latS) && empty(lonS)) return null;
  if (empty(latS) || empty(lonS)) throw new FieldError(`latitude '${latS ?? ''}' and longitude '${lonS ?? ''}' must both be present`);
  const lat = angle(latS as string, 2, 90, 'latitude');
  const lon = angle(lonS as string, 3, 180, 'longitude');
  if (ns !== 'N' && ns !== 'S') throw new FieldError(`latitude hemisphere '${ns ?? ''}' is neither N nor S`);
  if (ew !== 'E' && ew !== 'W') throw new FieldError(`longitude hemisphere '${ew ?? ''}' is neither E nor W`);
  return { lat: ns === 'S' ? -lat : lat, lon: ew === 'W' ? -lon : lon };
}

function angle(s: string, maxDegDigits: number, maxDeg: number, what: string): number {
  const m = /^(\d+)(\d\d(?:\.\d*)?)$/.exec(s);
  if (!m || (m[1] as string).length > maxDegDigits) throw new FieldError(`${what} '${s}' is not ${'d'.repeat(maxDegDigits)}mm.mmmm`);
  const deg = Number(m[1]);
  const min = Number(m[2]);
  const value = deg + min / 60;
  if (min >= 60 || value > maxDeg) throw new FieldError(`${what} '${s}' is out of range`);
  return value;
}

/** The line as it can be shown in an error: control bytes escaped, cut to 100 chars. */
function printable(s: string): string {
  const cut = s.length > 100 ? `${s.slice(0, 100)}…` : s;
  return JSON.stringify(cut);
}
