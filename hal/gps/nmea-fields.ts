// How NMEA 0183 field text becomes numbers, the way gpsd reads it.
// gpsd never rejects a sentence for a malformed field: a field it cannot read
// is "no value" (NaN) and the rest of the sentence still counts. Agreeing
// with gpsd on every receiver of its regression corpus means agreeing on
// these small rules too (which characters end a number, what a latitude
// without a decimal point is, how a two-digit year is read), so they live
// here, written once.
//
// Every function reads a range [from, to) of a string, and NmeaFields reads
// a sentence's fields in place in its line: this runs for every field of
// every sentence, and cutting the line into substrings (or matching regular
// expressions) was most of the parser's time.

/** Knots to metres per second, as gpsd computes it (1.852 / 3.6). */
export const KNOTS_TO_MPS = 1.852 / 3.6;

const ZERO = 48;
const NINE = 57;
const DOT = 46;

function isDigit(c: number): boolean {
  return c >= ZERO && c <= NINE;
}

/** C isspace in the "C" locale: space, \t, \n, \v, \f, \r. */
function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

/** Where the last strtol() stopped, as C's end pointer: after the digits, or at `from` when there were none. */
let strtolEnd = 0;

/** C strtol in base 10: leading blanks, an optional sign, digits up to the first other character (0 when none); sets strtolEnd. */
function strtol(s: string, from: number, to: number): number {
  let i = from;
  while (i < to && isSpace(s.charCodeAt(i))) i++;
  let negative = false;
  const sign = i < to ? s.charCodeAt(i) : 0;
  if (sign === 45 || sign === 43) {
    negative = sign === 45;
    i++;
  }
  let v = 0;
  const digitsFrom = i;
  for (; i < to; i++) {
    const c = s.charCodeAt(i);
    if (!isDigit(c)) break;
    v = v * 10 + (c - ZERO);
  }
  strtolEnd = i === digitsFrom ? from : i;
  return negative ? -v : v;
}

/**
 * C atoi: optional leading blanks and sign, then digits up to the first
 * other character; 0 when there are none. Receivers send "08" for 8
 * satellites and sometimes "8.5"; gpsd reads both with atoi.
 */
export function atoi(s: string, from = 0, to = s.length): number {
  return strtol(s, from, to);
}

/** Exact powers of ten: 10^22 is the largest a double holds exactly. */
const POW10 = [1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];

function scale(mantissa: number, exp10: number): number {
  if (exp10 === 0) return mantissa;
  if (exp10 > 0) return exp10 <= 22 ? mantissa * (POW10[exp10] as number) : mantissa * 10 ** exp10;
  return -exp10 <= 22 ? mantissa / (POW10[-exp10] as number) : mantissa / 10 ** -exp10;
}

/**
 * A decimal number the way gpsd's safe_atof reads it: leading blanks, a
 * sign, digits with at most one '.', an optional exponent, and anything
 * after that ignored ("12.5M" is 12.5). NaN when the text does not start
 * with a number (empty text included). The mantissa is accumulated as an
 * integer and divided once by an exact power of ten, so the result is the
 * correctly rounded double, as gpsd's is for the digit counts receivers send.
 */
export function atof(s: string, from = 0, to = s.length): number {
  let i = from;
  while (i < to && isSpace(s.charCodeAt(i))) i++;
  if (i >= to) return NaN;
  let negative = false;
  let c = s.charCodeAt(i);
  if (c === 45 || c === 43) {
    negative = c === 45;
    i++;
  } else if (!isDigit(c) && c !== DOT) {
    return NaN;
  }
  let mantissa = 0;
  let digits = 0;
  let exp10 = 0;
  let seenPoint = false;
  for (; i < to; i++) {
    c = s.charCodeAt(i);
    if (isDigit(c)) {
      // Like gpsd, keep 18 significant digits and count the rest as scale.
      if (digits < 18) {
        mantissa = mantissa * 10 + (c - ZERO);
        digits++;
        if (seenPoint) exp10--;
      } else if (!seenPoint) {
        exp10++;
      }
    } else if (c === DOT && !seenPoint) {
      seenPoint = true;
    } else {
      break;
    }
  }
  if (i < to && (c === 69 || c === 101)) {
    let j = i + 1;
    let expNegative = false;
    const es = s.charCodeAt(j);
    if (es === 45 || es === 43) {
      expNegative = es === 45;
      j++;
    }
    let e = 0;
    for (; j < to; j++) {
      const d = s.charCodeAt(j);
      if (!isDigit(d)) break;
      e = e * 10 + (d - ZERO);
      if (e > 1024) {
        if (expNegative) return negative ? -0 : 0;
        return negative ? -Infinity : Infinity;
      }
    }
    exp10 += expNegative ? -e : e;
  }
  const v = scale(mantissa, exp10);
  return negative ? -v : v;
}

/**
 * NMEA ddmm.mmmm / dddmm.mmmm into degrees, as gpsd decodes it: the integer
 * part is read as minutes scaled by 100, the degrees split off with integer
 * arithmetic and the fractional minutes added as a double, which is exact
 * where a float detour through value/100 is not. No decimal point is no
 * value (NaN). Range is not checked here: gpsd drops out-of-range positions
 * later, when the whole fix is checked (see the fix assembler).
 */
export function nmeaAngle(s: string, from = 0, to = s.length): number {
  const minutes = strtol(s, from, to);
  const end = strtolEnd;
  if (end >= to || s.charCodeAt(end) !== DOT) return NaN;
  const degrees = Math.trunc(minutes / 100);
  const wholeMinutes = minutes - degrees * 40;
  return (wholeMinutes + atof(s, end, to)) * (1 / 60);
}

/**
 * hhmmss[.sss]: the six digits as one integer (hh*10000 + mm*100 + ss, not
 * range-checked, as gpsd does not check them either) or -1 when the text is
 * shorter or one of the first six characters is not a digit.
 */
export function hhmmss(s: string, from = 0, to = s.length): number {
  if (to - from < 6) return -1;
  let v = 0;
  for (let i = from; i < from + 6; i++) {
    const c = s.charCodeAt(i);
    if (!isDigit(c)) return -1;
    v = v * 10 + (c - ZERO);
  }
  return v;
}

/**
 * The fraction of a second after hhmmss, in nanoseconds: the digits after
 * the '.' read as an integer and scaled by the number of characters after
 * the '.', as gpsd does (".5" is 500 ms, ".50" too, ".005" is 5 ms).
 */
export function nanosOf(s: string, from = 0, to = s.length): number {
  if (to - from < 8 || s.charCodeAt(from + 6) !== DOT || !isDigit(s.charCodeAt(from + 7))) return 0;
  const p = 9 - (to - from - 7);
  if (p < 0) return 0;
  return atoi(s, from + 7, to) * (POW10[p] as number);
}

function twoDigits(s: string, at: number): number {
  return (s.charCodeAt(at) - ZERO) * 10 + (s.charCodeAt(at + 1) - ZERO);
}

/** Day, month, year of a receiver date (the year in full). */
export interface UtcDate {
  year: number;
  /** 1..12 */
  month: number;
  /** 1..31 */
  day: number;
}

/**
 * RMC's ddmmyy: exactly six digits, month 1..12, day 1..31, else null. The
 * two-digit year is read as gpsd does, 69..99 as 1969..1999 and 00..68 as
 * 2000..2068, whatever the system clock says: the receiver's own century
 * guess is not better than that, and a receiver that lost a GPS week
 * rollover is repaired elsewhere (see utc.ts).
 */
export function ddmmyy(s: string, from = 0, to = s.length): UtcDate | null {
  if (to - from !== 6) return null;
  for (let i = from; i < to; i++) if (!isDigit(s.charCodeAt(i))) return null;
  const day = twoDigits(s, from);
  const month = twoDigits(s, from + 2);
  const yy = twoDigits(s, from + 4);
  if (month < 1 || month > 12 || day < 1 || day > 31) return null;
  return { year: yy < 69 ? 2000 + yy : 1900 + yy, month, day };
}

/** Milliseconds since UTC midnight for a valid hhmmss (and its fraction); null when out of range. */
export function timeOfDayMs(six: number, nanos: number): number | null {
  if (six < 0) return null;
  const h = Math.floor(six / 10000);
  const m = Math.floor(six / 100) % 100;
  const s = six % 100;
  // 60 is allowed: a leap second is announced as 23:59:60.
  if (h > 23 || m > 59 || s > 60) return null;
  return ((h * 60 + m) * 60 + s) * 1000 + Math.round(nanos / 1e6);
}

/**
 * A sentence's fields, read where they are in the line. Field 0 is the
 * address ('GPGGA', 'PGRME'), then the data fields up to the '*'; a field
 * past the end reads as empty, as gpsd points missing fields at "".
 */
export class NmeaFields {
  /** Number of fields, the address included (gpsd's count). */
  readonly count: number;

  /** `bounds` holds [start, end) of each field in `line`, flattened. */
  constructor(
    private readonly line: string,
    private readonly bounds: number[],
  ) {
    this.count = bounds.length >> 1;
  }

  private from(i: number): number {
    return this.bounds[2 * i] as number;
  }

  private to(i: number): number {
    return this.bounds[2 * i + 1] as number;
  }

  /** Field i as text. */
  text(i: number): string {
    return i < this.count ? this.line.slice(this.from(i), this.to(i)) : '';
  }

  /** All fields as text. */
  toArray(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.text(i));
    return out;
  }

  isEmpty(i: number): boolean {
    return i >= this.count || this.from(i) === this.to(i);
  }

  /** Length of field i. */
  length(i: number): number {
    return i < this.count ? this.to(i) - this.from(i) : 0;
  }

  /** Character code k of field i; NaN past its end. */
  code(i: number, k = 0): number {
    if (i >= this.count) return NaN;
    const at = this.from(i) + k;
    return at < this.to(i) ? this.line.charCodeAt(at) : NaN;
  }

  /** Whether field i is exactly `text`. */
  is(i: number, text: string): boolean {
    return this.length(i) === text.length && this.line.startsWith(text, this.from(i));
  }

  /** Whether field i contains character code c. */
  has(i: number, c: number): boolean {
    const to = i < this.count ? this.to(i) : 0;
    for (let at = i < this.count ? this.from(i) : 0; at < to; at++) if (this.line.charCodeAt(at) === c) return true;
    return false;
  }

  /** atoi of field i (0 when empty). */
  int(i: number): number {
    return i < this.count ? atoi(this.line, this.from(i), this.to(i)) : 0;
  }

  /** atof of field i (NaN when empty or not a number). */
  num(i: number): number {
    return i < this.count ? atof(this.line, this.from(i), this.to(i)) : NaN;
  }

  /** num(i), or null when it is NaN. */
  optionalNum(i: number): number | null {
    const v = this.num(i);
    return Number.isNaN(v) ? null : v;
  }

  angle(i: number): number {
    return i < this.count ? nmeaAngle(this.line, this.from(i), this.to(i)) : NaN;
  }

  hhmmss(i: number): number {
    return i < this.count ? hhmmss(this.line, this.from(i), this.to(i)) : -1;
  }

  /** The fraction of the second of the time in field i, in nanoseconds; 0 when the time itself is unreadable (as gpsd keeps it). */
  nanos(i: number): number {
    if (i >= this.count) return 0;
    const from = this.from(i);
    const to = this.to(i);
    return hhmmss(this.line, from, to) >= 0 ? nanosOf(this.line, from, to) : 0;
  }

  ddmmyy(i: number): UtcDate | null {
    return i < this.count ? ddmmyy(this.line, this.from(i), this.to(i)) : null;
  }

  /**
   * Latitude and longitude from fields i..i+3 (lat, N/S, lon, E/W): null
   * when any of the four is empty or a number cannot be read (gpsd's
   * do_lat_lon). Only 'S' and 'W' make a value negative; any other
   * hemisphere letter counts as north or east, as in gpsd.
   */
  latLon(i: number): { lat: number; lon: number } | null {
    if (this.isEmpty(i) || this.isEmpty(i + 1) || this.isEmpty(i + 2) || this.isEmpty(i + 3)) return null;
    let lat = this.angle(i);
    let lon = this.angle(i + 2);
    if (this.code(i + 1) === 83) lat = -lat;
    if (this.code(i + 3) === 87) lon = -lon;
    if (!Number.isFinite(lat) || !Number.isFinite(lon)) return null;
    return { lat, lon };
  }
}
