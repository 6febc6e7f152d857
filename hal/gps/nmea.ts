// NMEA 0183 sentence parser: one line of a receiver's byte stream in, one
// checksum-verified sentence (or the reason there is none) out. Pure, never
// throws: the serial stream is untrusted input (line noise, wrong baud rate,
// cold-boot junk, a binary protocol on the same port).
//
// Framing follows gpsd's packet lexer, because busguard is held against gpsd
// on its own regression corpus (test/fixtures/gps-corpus):
// - a sentence starts at the last '$' of the line: gpsd restarts at every
//   '$' (ST Teseo's '$$GNRMC', iSync and Triton 400 starting a sentence in
//   the middle of a cut one). gpsd can also glue a cut sentence back
//   together when its tail follows on the next line; reading line by line,
//   busguard drops it instead (no position in gpsd's corpus depends on it);
// - only the talkers gpsd's lexer knows ($GP $GN $GL $GA $GB $BD $QZ $GY
//   $II $IN $WI $HC $HE $SD $SN $ST $TI $YX $EC $AP $Ack and $P + a letter);
//   AIS reports (!AIVDM, $AIVDM) come through as their own type (ais.ts);
// - printable ASCII only, except in $PASHR (Ashtech sends it binary);
// - a checksum is mandatory (except "$STI,"): the last '*' and the two hex
//   digits after it, either case, anything after them ignored;
// - at most 130 characters including the line end, as gpsd's NMEA driver.
// Field content never rejects a sentence: gpsd reads what it can and
// ignores the rest, and so do the decoders (nmea-fields.ts,
// sentence-decoders.ts).

import * as fieldRules from './nmea-fields.ts';
import type { NmeaFields as Fields } from './nmea-fields.ts';
import type { NmeaError, ParsedSentence } from './sentence-types.ts';
import * as sentenceRules from './sentence-rules.ts';

// tsx (which runs busguard's TypeScript) compiles modules to CommonJS with
// getter-based exports, so every read of an imported binding is a getter
// call: 20-45x slower in a tight loop than a local. The per-sentence path
// therefore takes local references once, at load.
const { NmeaFields } = fieldRules;
const { TYPED_DECODERS } = sentenceRules;

export { KNOTS_TO_MPS, NmeaFields, type UtcDate } from './nmea-fields.ts';
export type {
  AisSentence,
  GgaSentence,
  GllSentence,
  GnsSentence,
  GsaSentence,
  NmeaError,
  OtherSentence,
  ParsedSentence,
  RmcSentence,
  SentenceBase,
  TypedFormatter,
  TypedSentence,
  TypedSentences,
  VtgSentence,
  ZdaSentence,
} from './sentence-types.ts';

/** gpsd's NMEA_MAX: a longer sentence is two sentences run together (Garmin GPS-10) and is dropped. */
export const NMEA_MAX_LENGTH = 130;
/** gpsd's NMEA_MAX_FLD: fields past it are ignored. */
const MAX_FIELDS = 100;
/** Field bounds are collected here, then copied once at their final size (no growth per field). */
const MAX_BOUNDS = 2 * MAX_FIELDS - 1;
const SCRATCH: number[] = new Array<number>(2 * MAX_FIELDS + 1).fill(0);

/** True when parseSentence returned an error. */
export function isNmeaError(r: ParsedSentence | NmeaError): r is NmeaError {
  return 'error' in r;
}

/** XOR of the characters of a sentence body (between '$' and '*'). */
export function nmeaChecksum(body: string): number {
  let sum = 0;
  for (let i = 0; i < body.length; i++) sum ^= body.charCodeAt(i);
  return sum;
}

/** Two upper-case hex digits, as NMEA 0183 writes the checksum. */
export function hex2(n: number): string {
  return n.toString(16).toUpperCase().padStart(2, '0');
}

/** The value of an ASCII hex digit, or -1. */
function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * Whether the characters after '$' start a sentence gpsd's lexer accepts as
 * NMEA: 'nmea', 'ais' ($AI...: an AIS report, a different protocol), or
 * 'unknown'. c1..c3 are the three characters after the '$'.
 */
function leaderKind(c1: number, c2: number, c3: number): 'nmea' | 'ais' | 'unknown' {
  switch (c1) {
    case 65: // A: $Ack (SiRF), $AP (autopilot), $AI (AIS)
      if (c2 === 73) return 'ais';
      return c2 === 80 || (c2 === 99 && c3 === 107) ? 'nmea' : 'unknown';
    case 66: // B: $BD BeiDou
      return c2 === 68 ? 'nmea' : 'unknown';
    case 69: // E: $EC ECDIS
      return c2 === 67 ? 'nmea' : 'unknown';
    case 71: // G: $GA Galileo, $GB BeiDou, $GL GLONASS, $GN combined, $GP GPS, $GY Unicore gyro
      return c2 === 65 || c2 === 66 || c2 === 76 || c2 === 78 || c2 === 80 || c2 === 89 ? 'nmea' : 'unknown';
    case 72: // H: $HC compass, $HE gyro
      return c2 === 67 || c2 === 69 ? 'nmea' : 'unknown';
    case 73: // I: $II, $IN integrated instruments
      return c2 === 73 || c2 === 78 ? 'nmea' : 'unknown';
    case 80: // P: proprietary, a letter must follow
      return (c2 >= 65 && c2 <= 90) || (c2 >= 97 && c2 <= 122) ? 'nmea' : 'unknown';
    case 81: // Q: $QZ QZSS
      return c2 === 90 ? 'nmea' : 'unknown';
    case 83: // S: $SD depth sounder, $SN Unicore sensors, $ST Skytraq
      return c2 === 68 || c2 === 78 || c2 === 84 ? 'nmea' : 'unknown';
    case 84: // T: $TI turn indicator
    case 87: // W: $WI weather instrument
      return c2 === 73 ? 'nmea' : 'unknown';
    case 89: // Y: $YX transducer
      return c2 === 88 ? 'nmea' : 'unknown';
    default:
      return 'unknown';
  }
}

/** The line as it can be shown in an error: control bytes escaped, cut to 100 chars. */
function printable(s: string): string {
  const cut = s.length > 100 ? `${s.slice(0, 100)}…` : s;
  return JSON.stringify(cut);
}

/**
 * Parse one line (with or without its CR/LF) into a checksum-verified sentence.
 * Lines from a serial reader split on '\n' keep their '\r': a '\r' anywhere
 * but at the end means the sentence was cut, as in gpsd.
 */
export function parseSentence(line: string): ParsedSentence | NmeaError {
  let end = line.length;
  if (end > 0 && line.charCodeAt(end - 1) === 10) end--;
  let crs = 0;
  while (end > 0 && line.charCodeAt(end - 1) === 13) {
    end--;
    crs++;
  }
  // One pass over the line: where the sentence starts (every '$' starts
  // afresh, so the last one wins), its checksum, the '*' that ends the data
  // (the first) and the one before the checksum (the last), and where each
  // field starts and ends. Fields are not cut into substrings: this runs for
  // every sentence.
  const bounds = SCRATCH;
  let start = -1;
  let n = 0;
  let inData = false;
  let sum = 0;
  let lastStar = -1;
  let sumAtLastStar = 0;
  let unprintableAt = -1;
  for (let i = 0; i < end; i++) {
    const c = line.charCodeAt(i);
    // Letters and digits (most of a sentence) take the first branch alone.
    if (c > 44 && c < 127) {
      sum ^= c;
      continue;
    }
    if (c === 36) {
      start = i;
      bounds[0] = i + 1;
      n = 1;
      inData = true;
      sum = 0;
      lastStar = -1;
      unprintableAt = -1;
      continue;
    }
    if (c === 44) {
      if (inData && n < MAX_BOUNDS) {
        bounds[n++] = i;
        bounds[n++] = i + 1;
      }
    } else if (c === 42) {
      if (inData) {
        bounds[n++] = i;
        inData = false;
      }
      lastStar = i;
      sumAtLastStar = sum;
    } else if ((c < 32 || c > 126) && unprintableAt < 0) {
      unprintableAt = i;
    }
    sum ^= c;
  }
  if (start < 0) {
    const bang = line.indexOf('!');
    if (bang >= 0 && bang < end) return parseAis(line, bang, end);
    return { kind: 'framing', error: `NMEA line ${printable(line)}: no '$'; partial line after open, or noise on the wire` };
  }
  const c1 = line.charCodeAt(start + 1);
  const c2 = line.charCodeAt(start + 2);
  const kind = leaderKind(c1, c2, line.charCodeAt(start + 3));
  if (kind === 'ais') return parseAis(line, start, end);
  if (kind !== 'nmea') {
    return { kind: 'framing', error: `NMEA line ${printable(line.slice(start))}: not a talker gpsd knows (GP, GN, GL, GA, GB, BD, QZ, P... )` };
  }
  // $PASHR from old Ashtech receivers may carry binary payloads; gpsd lets them through.
  if (unprintableAt >= 0 && !(c1 === 80 && c2 === 65 && line.startsWith('$PASHR', start))) {
    const byte = hex2(line.charCodeAt(unprintableAt));
    return {
      kind: 'framing',
      error: `NMEA line ${printable(line.slice(start))}: byte 0x${byte} is not printable ASCII; check the baud rate and that the receiver is in NMEA mode`,
    };
  }
  if (inData) bounds[n++] = end;
  // Skytraq's $STI debug output has no checksum; gpsd lets it through.
  if (!(c1 === 83 && c2 === 84 && line.startsWith('$STI,', start))) {
    const bad = checksumProblem(line, end, lastStar, lastStar < 0 ? sum : sumAtLastStar);
    if (bad) return { kind: 'checksum', error: `NMEA line ${printable(line.slice(start))}: ${bad}` };
  }
  const length = end - start + crs + 1;
  if (length > NMEA_MAX_LENGTH) {
    return { kind: 'framing', error: `NMEA line ${printable(line.slice(start))}: ${length} characters, more than ${NMEA_MAX_LENGTH}; two sentences run together` };
  }
  return decode(new NmeaFields(line, bounds.slice(0, n)), line.slice(start + 1, bounds[1]));
}

/** Whether an AIS sentence starts at `at` ('!' or '$'), by gpsd's lexer: !A[BDINRSTX]x, !BSx, !SAx, $AIx. */
function aisLeader(line: string, at: number): boolean {
  const c1 = line.charCodeAt(at + 1);
  const c2 = line.charCodeAt(at + 2);
  const c3 = line.charCodeAt(at + 3);
  const letter = (c3 >= 65 && c3 <= 90) || (c3 >= 97 && c3 <= 122);
  if (line.charCodeAt(at) === 36) return c1 === 65 && c2 === 73 && letter;
  if (c1 === 65) return 'BDINRSTX'.includes(String.fromCharCode(c2)) && letter;
  return ((c1 === 66 && c2 === 83) || (c1 === 83 && c2 === 65)) && letter;
}

/**
 * An AIS sentence from `start` ('!' or '$') to the end of the line: printable,
 * checksummed like NMEA, but not bound by NMEA's 130 characters (gpsd hands
 * it to its AIS driver, not to the NMEA one).
 */
function parseAis(line: string, start: number, end: number): ParsedSentence | NmeaError {
  if (!aisLeader(line, start)) {
    return { kind: 'framing', error: `NMEA line ${printable(line.slice(start))}: neither a '$' sentence nor an AIS report` };
  }
  const bounds = [start + 1];
  let inData = true;
  let sum = 0;
  let lastStar = -1;
  let sumAtLastStar = 0;
  for (let i = start + 1; i < end; i++) {
    const c = line.charCodeAt(i);
    if (c < 32 || c > 126) return { kind: 'framing', error: `AIS line ${printable(line.slice(start))}: byte 0x${hex2(c)} is not printable ASCII` };
    if (c === 44 && inData) bounds.push(i, i + 1);
    if (c === 42) {
      if (inData) bounds.push(i);
      inData = false;
      lastStar = i;
      sumAtLastStar = sum;
    }
    sum ^= c;
  }
  if (inData) bounds.push(end);
  const bad = checksumProblem(line, end, lastStar, lastStar < 0 ? sum : sumAtLastStar);
  if (bad) return { kind: 'checksum', error: `AIS line ${printable(line.slice(start))}: ${bad}` };
  if (bounds.length > 2 * MAX_FIELDS) bounds.length = 2 * MAX_FIELDS;
  const address = line.slice(start + 1, bounds[1]);
  return { type: 'AIS', talker: address.slice(0, 2), formatter: address.slice(2), address, fields: new NmeaFields(line, bounds) };
}

/** Why the checksum does not verify, or null when it does. */
function checksumProblem(line: string, end: number, lastStar: number, sum: number): string | null {
  if (lastStar < 0) {
    return `no *hh checksum, expected *${hex2(sum)}, got none; truncated line, or a receiver not sending checksums`;
  }
  const hi = lastStar + 1 < end ? hexValue(line.charCodeAt(lastStar + 1)) : -1;
  const lo = lastStar + 2 < end ? hexValue(line.charCodeAt(lastStar + 2)) : -1;
  if (hi < 0 || lo < 0) return `no *hh checksum, expected *${hex2(sum)}, got '${line.slice(lastStar + 1, end)}'; truncated line`;
  const got = hi * 16 + lo;
  if (got !== sum) return `checksum mismatch, expected ${hex2(sum)}, got ${hex2(got)}; line noise or a wrong baud rate`;
  return null;
}

/**
 * The typed sentence when the table has a decoder for the formatter
 * (sentence-rules.ts), 'other' for the rest. As in gpsd, a three-letter
 * formatter matches after whatever two characters precede it (so Quectel's
 * $PQGSA is a GSA), unless the table names the whole address: $PGRMC,
 * Garmin's configuration echo, must not be taken for an RMC.
 */
function decode(fields: Fields, address: string): ParsedSentence {
  if (address.length === 5) {
    // The formatter's three letters as one number: no substring per sentence.
    const typed = DECODERS.get(formatterCode(address, 2));
    if (typed !== undefined && (typed.shadowedBy.length === 0 || !typed.shadowedBy.includes(address))) return typed.decode(fields, address);
  }
  if (address.charCodeAt(0) === 80) return { type: 'other', talker: 'P', formatter: address.slice(1), address, fields };
  return { type: 'other', talker: address.slice(0, 2), formatter: address.slice(2), address, fields };
}

function formatterCode(s: string, at: number): number {
  return (s.charCodeAt(at) << 16) | (s.charCodeAt(at + 1) << 8) | s.charCodeAt(at + 2);
}

const DECODERS = new Map(TYPED_DECODERS.map((d) => [formatterCode(d.formatter, 0), d]));
