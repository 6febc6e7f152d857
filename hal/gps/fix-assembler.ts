// Turns a receiver's sentences into the fixes it reports, the way gpsd does.
//
// NMEA 0183 has no end-of-cycle marker: a receiver sends RMC, GGA, GSA,
// GSV... for one epoch in a burst, in an order of its own, and each sentence
// carries part of the fix. gpsd learns, per receiver, which time-stamped
// sentence comes last before the time changes and reports the merged fix
// after it; until it has learned that (or when a receiver keeps changing its
// pattern) it reports every sentence that changes the position or the mode.
// busguard reports exactly when gpsd does and with the same mode, because
// that is what a fleet operator can check against gpsd on the same capture
// (test/fixtures/gps-corpus, scripts/bench/gps-agreement.ts).
//
// Per sentence, in gpsd's order (gpsd_poll, nmea_parse, all_reports):
//   1. the sentence's rule computes its contribution and what it set
//      (sentence-rules.ts);
//   2. a change of time of day starts a new cycle; a time-stamped sentence
//      seen just before such a change becomes a cycle ender; reaching an
//      ender (or what follows it) asks for a report (see cycleEnd below);
//   3. a cycle start clears the fix; the contribution is merged in;
//   4. the fix is checked (positions out of range dropped) and completed
//      (altitude from geoid height, error estimates from DOPs);
//   5. on a report, the fix is emitted if it has a position.
//
// What is emitted: a GpsFix whenever gpsd would print a TPV with a latitude
// and longitude — mode 2 or 3 (valid) — and also when the receiver sent a
// position but no fix (mode 1, valid=false): gpsd hides that position, but
// an alarm raised before the first lock is better off with the receiver's
// last guess, flagged, than with nothing. A fix identical to the one before
// (a GSV after the cycle's end re-reports the same fix) is not repeated, and
// a report gpsd withholds from its clients (an incomplete AIS message
// pending, see ais.ts) is withheld here too.

import type { GpsFix } from './types.ts';
import type { ParsedSentence } from './sentence-types.ts';
import * as fixState from './fix-state.ts';
import * as receiverState from './receiver-state.ts';
import type { ReceiverState } from './receiver-state.ts';
import * as sentenceRules from './sentence-rules.ts';
import * as utc from './utc.ts';
import * as geodesy from './geodesy.ts';
import { AisHalfMessages } from './ais.ts';

// Local references for the per-sentence path (see nmea.ts on tsx's getter-based imports).
const { MODE_2D, MODE_3D, MODE_NO_FIX, SET, STATUS, clearFix, hasAltitude, mergeFix } = fixState;
const { newReceiverState } = receiverState;
const { RULE_COUNT, ruleFor, typedRule } = sentenceRules;
const { fixTimeSeconds, fixTimeMs } = utc;
const { ellipsoidDistanceM } = geodesy;

/** What a sentence may set without touching the fix (its rule writes nothing into st.newdata then). */
const BESIDE_THE_FIX = SET.ONLINE | SET.SATELLITE | SET.USED | SET.GST | SET.NAVDATA | SET.OSCILLATOR | SET.ERROR | SET.DEVICEID | SET.ATTITUDE | SET.REPORT;

/** gpsd's user-equivalent range errors (95 %), metres: error estimate = DOP × UERE. */
const UERE = {
  vertical: { plain: 23.0, dgps: 5.75 },
  position: { plain: 19.0, dgps: 4.75 },
};

export class FixAssembler {
  private readonly st: ReceiverState = newReceiverState(RULE_COUNT);
  private readonly ais = new AisHalfMessages();
  private readonly now: () => number;
  private lastEmitted: GpsFix | null = null;
  private lastTimeMs: number | null = null;

  constructor(opts: { now?: () => number } = {}) {
    this.now = opts.now ?? (() => performance.now());
  }

  /**
   * The capture being fed is dated from outside (gpsd's regression logs
   * carry a '# Date: yyyy-mm-dd' comment): receiver dates are then taken as
   * sent, without the GPS week-rollover repair that only makes sense against
   * a live clock (see utc.ts). As in gpsd, the date itself changes nothing
   * for NMEA, whose years come from RMC and ZDA.
   */
  markCaptureDated(): void {
    this.st.time.captureDated = true;
  }

  /** Feed one parsed sentence; returns the fixes it made the receiver report (zero or one). */
  push(s: ParsedSentence): GpsFix[] {
    // AIS goes to gpsd's AIS driver: the GNSS fix is untouched.
    if (s.type === 'AIS') {
      this.ais.observe(s.fields);
      return [];
    }
    const st = this.st;
    const nd = st.newdata;
    clearFix(nd);
    st.frac.latched = false;
    st.seriesMore = false;

    // The table's rule: a typed sentence's by its type (the rule reads what the parser decoded), another's by its address.
    let mask: number = SET.ONLINE;
    let tag = 0;
    if (s.type === 'other') {
      const rule = ruleFor(s);
      if (rule?.apply && s.fields.count >= rule.minFields) {
        mask = rule.apply(s, st);
        st.cycleContinues = rule.continuesCycle;
        tag = rule.tag;
      }
    } else {
      const rule = typedRule(s.type);
      if (s.fields.count >= rule.minFields) {
        mask = rule.apply(s, st);
        st.cycleContinues = rule.continuesCycle;
        tag = rule.tag;
      }
    }
    noteSeries(st, s.address);
    if (mask & SET.TIME) {
      nd.timeS = fixTimeSeconds(st.date, st.time);
      nd.timeNs = st.date.nanos;
    }
    mask |= cycleEnd(st, mask, tag);
    keepThreeD(st, mask);

    // Most sentences (satellites in view, headings, unknown ones) leave the
    // fix as it was: merging and checking it again would change nothing.
    if ((mask & ~BESIDE_THE_FIX) !== 0) {
      if (mask & SET.CLEAR) {
        clearFix(st.fix);
        if (!(mask & SET.DOP)) st.dop.pdop = st.dop.hdop = st.dop.vdop = NaN;
      }
      mergeFix(st.fix, mask, nd);
      checkAndComplete(st);
    }

    const report = (mask & SET.REPORT) !== 0 || (!st.cycleEndReliable && (mask & (SET.ATTITUDE | SET.LATLON | SET.MODE)) !== 0);
    if (!report) return [];
    const withheld = this.ais.halfPending;
    this.ais.reported();
    if (withheld) return [];
    const fix = this.toGpsFix();
    if (!fix) return [];
    this.lastEmitted = fix;
    return [fix];
  }

  /**
   * Nothing is held back: a fix is emitted as soon as the receiver's cycle
   * says so. Kept for callers that flush when the port goes quiet; always null.
   */
  flush(): GpsFix | null {
    return null;
  }

  /** The cycle's fix as a GpsFix, or null without a position or when it repeats the last one. */
  private toGpsFix(): GpsFix | null {
    const st = this.st;
    const f = st.fix;
    if (Number.isNaN(f.lat) || Number.isNaN(f.lon)) return null;
    const timeMs = fixTimeMs(f.timeS, f.timeNs);
    const mode = f.mode === MODE_3D ? 3 : f.mode === MODE_2D ? 2 : 1;
    const sats = st.satellitesUsed > 0 ? st.satellitesUsed : st.gga.satsUsed > 0 ? st.gga.satsUsed : null;
    const altMSL = finiteOrNull(f.altMSL);
    const altHAE = finiteOrNull(f.altHAE);
    const speedMps = finiteOrNull(f.speed);
    const trackDeg = finiteOrNull(f.track);
    const hdop = finiteOrNull(st.dop.hdop);
    const eph = mode >= 2 ? finiteOrNull(f.eph) : null;
    const epv = mode >= 3 ? finiteOrNull(f.epv) : null;
    // A report that repeats the last one (a GSV after the cycle's end) is not news.
    const last = this.lastEmitted;
    if (
      last &&
      last.mode === mode &&
      last.lat === f.lat &&
      last.lon === f.lon &&
      this.lastTimeMs === timeMs &&
      last.altMSL === altMSL &&
      last.altHAE === altHAE &&
      last.speedMps === speedMps &&
      last.trackDeg === trackDeg &&
      last.sats === sats &&
      last.hdop === hdop &&
      last.eph === eph &&
      last.epv === epv
    ) {
      return null;
    }
    this.lastTimeMs = timeMs;
    return {
      valid: mode >= 2,
      mode,
      lat: f.lat,
      lon: f.lon,
      altM: altMSL,
      altMSL,
      altHAE,
      speedMps,
      trackDeg,
      time: timeMs === null ? null : new Date(timeMs),
      sats,
      hdop,
      eph,
      epv,
      receivedAtMs: this.now(),
    };
  }
}

function finiteOrNull(v: number): number | null {
  return Number.isFinite(v) ? v : null;
}

/** Whether an address is a GSV (or GSA): series of those are tracked across sentences. */
function formatterIs(address: string, formatter: string): boolean {
  return address.length >= 5 && address.startsWith(formatter, 2);
}

/** A series of GSVs or GSAs ends at the first sentence that is not one. */
function noteSeries(st: ReceiverState, address: string): void {
  if (!formatterIs(address, 'GSV')) {
    if (st.gsv.talker !== 0) st.gsv.endTalker = st.gsv.talker;
    st.gsv.talker = 0;
  }
  if (!formatterIs(address, 'GSA')) st.gsa.talker = 0;
}

/**
 * gpsd's end-of-cycle detector; returns SET.CLEAR and/or SET.REPORT.
 * A time-stamped sentence whose time of day differs from the previous one
 * starts a cycle, and the time-stamped sentence before it is marked as a
 * cycle ender (unless a continuing sentence such as GLL came after it).
 * From then on the ender asks for a report, and so does anything with new
 * data right after it. GSV/GSA series in progress never end a cycle.
 */
function cycleEnd(st: ReceiverState, mask: number, tag: number): number {
  let out = 0;
  const lastTag = st.lastTag;
  if (st.seriesMore) {
    // more of the series to come
  } else if (st.frac.latched) {
    if (Math.abs(st.frac.current - st.frac.previous) > 0.01) {
      out |= SET.CLEAR;
      if (lastTag > 0 && !st.cycleEnders[lastTag] && !st.cycleContinues) {
        st.cycleEnders[lastTag] = 1;
        st.cycleEndReliable = true;
      }
    }
  } else {
    if (st.cycleEnders[lastTag] && (mask & ~SET.ONLINE) !== 0) out |= SET.REPORT;
    if (st.cycleContinues) {
      st.cycleEnders[lastTag] = 0;
      st.cycleEnders[tag] = 1;
      st.cycleEndReliable = true;
    }
  }
  if ((st.frac.latched || st.cycleContinues) && st.cycleEnders[tag] && !st.seriesMore) out |= SET.REPORT;
  if (st.frac.latched) st.lastTag = tag;
  return out;
}

/**
 * A sentence that only says "a fix" (RMC, GLL) must not turn the cycle's 3D
 * fix into 2D while the receiver has been reporting altitudes.
 */
function keepThreeD(st: ReceiverState, mask: number): void {
  const nd = st.newdata;
  if (mask & SET.MODE && st.fix.mode === MODE_3D && nd.mode !== MODE_NO_FIX && (st.lastfix.hasAltitude || st.oldfix.hasAltitude)) {
    nd.mode = MODE_3D;
  }
}

/** Normalise a direction to [0, 360). */
function degNorm(d: number): number {
  if (d < 0) return d + 360;
  if (d >= 360) return d - 360;
  return d;
}

/**
 * gpsd's error model, for the parts that do not need its geoid and magnetic
 * models: drop positions out of range, complete speed and track from
 * velocities, the other altitude from the geoid height, the speed from the
 * distance to the previous epoch's fix, error estimates from the DOPs;
 * remember the last timed fix and the one of the epoch before.
 */
function checkAndComplete(st: ReceiverState): void {
  const { fix, oldfix, lastfix } = st;
  // Seconds since the fix of the previous epoch (oldfix), to derive a speed from.
  let elapsed = -1;
  if (fix.timeS > 0) {
    elapsed = fix.timeS - lastfix.timeS + (fix.timeNs - lastfix.timeNs) / 1e9;
    if (Math.abs(elapsed) > 0.0099) {
      oldfix.timeS = lastfix.timeS;
      oldfix.timeNs = lastfix.timeNs;
      oldfix.mode = lastfix.mode;
      oldfix.lat = lastfix.lat;
      oldfix.lon = lastfix.lon;
      oldfix.hasAltitude = lastfix.hasAltitude;
    } else {
      elapsed = fix.timeS - oldfix.timeS + (fix.timeNs - oldfix.timeNs) / 1e9;
    }
  }
  if (!Number.isFinite(fix.lat) || !Number.isFinite(fix.lon) || Math.abs(fix.lat) > 90 || Math.abs(fix.lon) > 180) {
    fix.lat = fix.lon = NaN;
  }
  if (Math.abs(fix.speed) > 9999.9) fix.speed = NaN;
  if (Math.abs(fix.velN) > 9999.9) fix.velN = NaN;
  if (Math.abs(fix.velE) > 9999.9) fix.velE = NaN;
  if (Math.abs(fix.velD) > 9999.9) fix.velD = NaN;
  if (Math.abs(fix.climb) > 9999.9) fix.climb = NaN;
  if (Number.isFinite(fix.velD) && Number.isNaN(fix.climb)) fix.climb = -fix.velD;
  if (Number.isFinite(fix.velN) && Number.isFinite(fix.velE)) {
    if (Number.isNaN(fix.speed)) fix.speed = Math.hypot(fix.velN, fix.velE);
    if (Number.isNaN(fix.track)) fix.track = (Math.atan2(fix.velE, fix.velN) * 180) / Math.PI;
  }
  if (Number.isFinite(fix.magneticVar)) {
    if (Number.isNaN(fix.magneticTrack) && Number.isFinite(fix.track)) fix.magneticTrack = degNorm(fix.track + fix.magneticVar);
    else if (Number.isFinite(fix.magneticTrack) && Number.isNaN(fix.track)) fix.track = fix.magneticTrack - fix.magneticVar;
  }
  if (Number.isFinite(fix.track)) fix.track = degNorm(fix.track);
  if (Number.isFinite(fix.geoidSep)) {
    if (Number.isFinite(fix.altHAE) && Number.isNaN(fix.altMSL)) fix.altMSL = fix.altHAE - fix.geoidSep;
    else if (Number.isNaN(fix.altHAE) && Number.isFinite(fix.altMSL)) fix.altHAE = fix.altMSL + fix.geoidSep;
  }
  // No speed from the receiver (yet, in this cycle): distance from the previous epoch's fix over the time between.
  if (elapsed > 0 && fix.mode >= MODE_2D && oldfix.mode >= MODE_2D && Number.isNaN(fix.speed)) {
    fix.speed = ellipsoidDistanceM(fix.lat, fix.lon, oldfix.lat, oldfix.lon) / elapsed;
    if (Math.abs(fix.speed) > 9999.9) fix.speed = NaN;
  }
  if (fix.mode >= MODE_2D) {
    const dgps = fix.status === STATUS.DGPS;
    if (fix.mode >= MODE_3D && Number.isNaN(fix.epv) && Number.isFinite(st.dop.vdop)) {
      fix.epv = st.dop.vdop * (dgps ? UERE.vertical.dgps : UERE.vertical.plain);
    }
    if (Number.isNaN(fix.eph) && Number.isFinite(st.dop.hdop)) fix.eph = st.dop.hdop * (dgps ? UERE.position.dgps : UERE.position.plain);
    if (Number.isNaN(fix.sep) && Number.isFinite(st.dop.pdop)) fix.sep = st.dop.pdop * (dgps ? UERE.position.dgps : UERE.position.plain);
  }
  if (fix.timeS > 0) {
    lastfix.timeS = fix.timeS;
    lastfix.timeNs = fix.timeNs;
    lastfix.mode = fix.mode;
    lastfix.lat = fix.lat;
    lastfix.lon = fix.lon;
    lastfix.hasAltitude = hasAltitude(fix);
  }
}
