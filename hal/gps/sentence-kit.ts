// What the sentence rules share: the rule type, character codes, the FAA
// mode letter as a fix status, and how a sentence's time and date fields
// update the receiver's running date and the cycle clock (gpsd's
// merge_hhmmss, merge_ddmmyy and register_fractional_time). See
// sentence-rules.ts for the table and the rule files.

import type { OtherSentence, SentenceBase } from './sentence-types.ts';
import * as fixState from './fix-state.ts';
import type { ReceiverState } from './receiver-state.ts';

const { STATUS } = fixState;

/**
 * What a sentence does to the receiver: writes its contribution into
 * st.newdata, returns the SET bits of what it set. A typed sentence's rule
 * takes its decoded sentence (Apply<GgaSentence>); the others read fields.
 */
export type Apply<S extends SentenceBase = OtherSentence> = (s: S, st: ReceiverState) => number;

/** Character codes of the letters the rules test most (fields are read as codes, not substrings). */
export const A = 65;
export const M = 77;
export const N = 78;
export const P = 80;
export const V = 86;

/** Field i of a sentence as text, '' past the end (for the rare rules that need a string). */
export function f(s: SentenceBase, i: number): string {
  return s.fields.text(i);
}

/** First character code of a string (NaN for ''). */
export function c0(x: string): number {
  return x.charCodeAt(0);
}

/** Two decimal digits at offset k of field i, as gpsd's DD() reads them (no digit check; NaN past the end). */
export function dd(s: SentenceBase, i: number, k: number): number {
  return (s.fields.code(i, k) - 48) * 10 + (s.fields.code(i, k + 1) - 48);
}

/** gpsd's IN(lo, x, hi). */
export function within(lo: number, x: number, hi: number): boolean {
  return lo <= x && x <= hi;
}

/** The FAA mode indicator (NMEA 2.3+) as a fix status. */
export function faaStatus(mode: number): number {
  switch (mode) {
    case 68: // D differential
    case P: // P precise
      return STATUS.DGPS;
    case 69: // E estimated (dead reckoning)
      return STATUS.DR;
    case 70: // F float RTK
      return STATUS.RTK_FLT;
    case M: // M manual input, taken as surveyed
      return STATUS.TIME;
    case 82: // R fixed RTK
      return STATUS.RTK_FIX;
    case 83: // S simulator
      return STATUS.SIM;
    case N: // N not valid
    case 79: // O (Skytraq)
    case V: // V invalid
      return STATUS.UNK;
    default:
      // Missing (NaN) is unknown; A and anything else is a plain GPS fix.
      return Number.isNaN(mode) ? STATUS.UNK : STATUS.GPS;
  }
}

/** Merge field i (hhmmss) into the running date; false (date untouched) when it is malformed. */
export function mergeFieldTime(st: ReceiverState, s: SentenceBase, i: number): boolean {
  const six = s.fields.hhmmss(i);
  return mergeDecodedTime(st, six, s.fields.nanos(i));
}

/** Merge a decoded time (typed sentences carry it) into the running date; false when it is malformed. */
export function mergeDecodedTime(st: ReceiverState, six: number, nanos: number): boolean {
  if (six < 0) return false;
  st.date.hour = Math.floor(six / 10000);
  st.date.minute = Math.floor(six / 100) % 100;
  st.date.second = six % 100;
  st.date.nanos = nanos;
  return true;
}

/** Merge field i (ddmmyy) into the running date; false (date untouched) when it is malformed. */
export function mergeFieldDate(st: ReceiverState, s: SentenceBase, i: number): boolean {
  const d = s.fields.ddmmyy(i);
  if (!d) return false;
  st.date.year = d.year;
  st.date.month = d.month;
  st.date.day = d.day;
  return true;
}

/**
 * Note the time of day a sentence is stamped with: a change of it is what
 * starts a new reporting cycle (NMEA has no end-of-cycle marker).
 */
export function noteFieldTimeOfDay(st: ReceiverState, s: SentenceBase, i: number): void {
  const six = s.fields.hhmmss(i);
  if (six >= 0) noteDecodedTimeOfDay(st, six, s.fields.nanos(i));
}

export function noteDecodedTimeOfDay(st: ReceiverState, six: number, nanos: number): void {
  const seconds = Math.floor(six / 10000) * 3600 + (Math.floor(six / 100) % 100) * 60 + (six % 100);
  st.frac.previous = st.frac.current;
  st.frac.current = seconds + nanos / 1e9;
  st.frac.latched = true;
}

/** Forget the date: a receiver that sends neither time nor date has none (Quectel's empty $GPRMC,,V). */
export function forgetDate(st: ReceiverState): void {
  st.date.year = 0;
  st.date.month = 1;
  st.date.day = 0;
  st.date.hour = st.date.minute = st.date.second = 0;
}
