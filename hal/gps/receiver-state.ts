// What busguard remembers about one receiver between sentences: the fix of
// the current reporting cycle, the last fixes before it, the running date,
// satellite bookkeeping and the reporting-cycle detector. It mirrors the
// parts of gpsd's session (struct gps_device_t) that decide when and with
// what mode a position is reported; see sentence-rules.ts for who changes
// what, and fix-assembler.ts for the order it happens in.

import { type FixState, emptyFix } from './fix-state.ts';
import { DEFAULT_LEAP_SECONDS, type ReceiverDate, type TimeContext, emptyReceiverDate } from './utc.ts';

/** gpsd's MAXCHANNELS: satellites it keeps track of at once. */
export const MAX_CHANNELS = 230;

export interface Dops {
  pdop: number;
  hdop: number;
  vdop: number;
}

/** What is remembered of an earlier fix: its epoch, mode, position, and whether it had an altitude. */
export interface PastFix {
  timeS: number;
  timeNs: number;
  mode: number;
  lat: number;
  lon: number;
  hasAltitude: boolean;
}

function noPastFix(): PastFix {
  return { timeS: 0, timeNs: 0, mode: 0, lat: NaN, lon: NaN, hasAltitude: false };
}

export interface ReceiverState {
  /** What the sentence being applied contributes (cleared for every sentence). */
  newdata: FixState;
  /** The fix of the current reporting cycle. */
  fix: FixState;
  /** The last fix that had a time (gpsd's lastfix), and the one of the epoch before it (oldfix). */
  lastfix: PastFix;
  oldfix: PastFix;
  /** The running receiver date that time-only sentences complete. */
  date: ReceiverDate;
  time: TimeContext;
  /** Dilutions of precision as last reported (NaN unknown). */
  dop: Dops;
  /** Satellites used in the solution, from GSA (or $PERC,GPppr / $PASHR,SAT). */
  satellitesUsed: number;
  /** The PRNs GSA listed as used this cycle, without duplicates. */
  usedPrns: number[];
  gga: {
    /** Second letter of the last GGA's talker (char code), 0 before any. */
    talker: number;
    /** The last GGA's time field, to spot receivers that repeat a stale GGA. */
    timestamp: string;
    /** The last GGA repeated its time: a stale fix, and the GSA that follows is not believed. */
    stale: boolean;
    /** Satellites used per GGA (or GNS, $PASHR,POS): decides 3D. */
    satsUsed: number;
  };
  gsa: {
    /** Second letter of the previous sentence's talker when it was a GSA, else 0. */
    talker: number;
    /** A GSA from a constellation other than GPS alone (GL, GA, GB, BD, GN, QZ) was seen. */
    seenOtherSystem: boolean;
  };
  gsv: {
    await: number;
    part: number;
    /** Talker letter of the GSV series in progress, 0 when the previous sentence was not a GSV. */
    talker: number;
    /** Talker letter of the last GSV series that ended. */
    endTalker: number;
    seenOtherSystem: boolean;
    visible: number;
    /** Azimuth per satellite slot (NaN unknown): an all-zero sky is SiRF's "no satellites" hairball. */
    azimuths: Float64Array;
    /** Slots below this may hold an azimuth; the rest are NaN. */
    written: number;
  };
  /** Time of day of the last two time-stamped sentences, seconds: a change starts a cycle. */
  frac: { current: number; previous: number; latched: boolean };
  /** A GSV or GSA series is still incomplete. */
  seriesMore: boolean;
  /** The table tag of the last time-stamped sentence, 0 before any. */
  lastTag: number;
  /** Table tags known to end a reporting cycle. */
  cycleEnders: Uint8Array;
  /** The last decoded sentence continues the cycle after the time-stamped ones (GLL). */
  cycleContinues: boolean;
  /** A cycle end has been recognised; until then every position or mode change is reported. */
  cycleEndReliable: boolean;
  /** Receiver identification as last announced, to report a change only once. */
  subtype: string;
  serial: string;
}

export function newReceiverState(tags: number): ReceiverState {
  const azimuths = new Float64Array(MAX_CHANNELS);
  azimuths.fill(NaN);
  return {
    newdata: emptyFix(),
    fix: emptyFix(),
    lastfix: noPastFix(),
    oldfix: noPastFix(),
    date: emptyReceiverDate(),
    time: { captureDated: false, leapSeconds: DEFAULT_LEAP_SECONDS },
    dop: { pdop: NaN, hdop: NaN, vdop: NaN },
    satellitesUsed: 0,
    usedPrns: [],
    gga: { talker: 0, timestamp: '', stale: false, satsUsed: 0 },
    gsa: { talker: 0, seenOtherSystem: false },
    gsv: { await: 0, part: 0, talker: 0, endTalker: 0, seenOtherSystem: false, visible: 0, azimuths, written: 0 },
    frac: { current: 0, previous: 0, latched: false },
    seriesMore: false,
    lastTag: 0,
    cycleEnders: new Uint8Array(tags + 1),
    cycleContinues: false,
    cycleEndReliable: false,
    subtype: '',
    serial: '',
  };
}

/** Forget the satellites in view (gpsd_zero_satellites). */
export function zeroSatellites(st: ReceiverState): void {
  st.gsv.visible = 0;
  st.gsv.azimuths.fill(NaN, 0, st.gsv.written);
  st.gsv.written = 0;
}
