// Merges the RMC and GGA of one reporting cycle into a GpsFix.
// A receiver sends its sentences for one epoch in a burst that all carry the
// same UTC time of day (NMEA 0183 gives no end-of-cycle marker), so a cycle is
// complete when both sentences were seen or when a different time arrives.

import type { GpsFix } from './types.ts';
import type { GgaSentence, ParsedSentence, RmcSentence } from './nmea.ts';

interface Cycle {
  timeOfDayMs: number | null;
  rmc: RmcSentence | null;
  gga: GgaSentence | null;
  /** When the cycle's latest sentence arrived: a fix emitted only when the next cycle starts is still stamped with its own arrival. */
  lastAtMs: number;
}

export class FixAssembler {
  private cycle: Cycle | null = null;
  /** Time of the cycle last emitted because it was complete: a late duplicate (GPRMC after GNRMC) must not make a second fix. */
  private emittedTimeOfDayMs: number | null = null;
  private readonly now: () => number;

  constructor(opts: { now?: () => number } = {}) {
    this.now = opts.now ?? (() => performance.now());
  }

  /** Feed one parsed sentence; returns the fixes it completed (zero, one, or two). */
  push(s: ParsedSentence): GpsFix[] {
    if (s.type !== 'RMC' && s.type !== 'GGA') return [];
    const out: GpsFix[] = [];
    const t = s.timeOfDayMs;

    if (t !== null && t === this.emittedTimeOfDayMs) return out;
    if (this.cycle && (t === null || this.cycle.timeOfDayMs !== t)) {
      this.emit(this.cycle, out);
      this.cycle = null;
    }
    this.emittedTimeOfDayMs = null;
    const cycle = (this.cycle ??= { timeOfDayMs: t, rmc: null, gga: null, lastAtMs: 0 });
    cycle.lastAtMs = this.now();
    // The first sentence of a type wins: a receiver that sends both GNRMC and
    // GPRMC in one epoch gives the combined solution first.
    if (s.type === 'RMC') cycle.rmc ??= s;
    else cycle.gga ??= s;

    // Without a time there is nothing to match the partner sentence on.
    if ((cycle.rmc && cycle.gga) || t === null) {
      this.emit(cycle, out);
      this.cycle = null;
      this.emittedTimeOfDayMs = t;
    }
    return out;
  }

  /** Emit the pending cycle now (receiver went quiet, port closing). */
  flush(): GpsFix | null {
    const out: GpsFix[] = [];
    if (this.cycle) this.emit(this.cycle, out);
    this.cycle = null;
    return out[0] ?? null;
  }

  private emit(c: Cycle, out: GpsFix[]): void {
    const fix = assembleFix(c.rmc, c.gga, c.lastAtMs);
    if (fix) out.push(fix);
  }
}

/** One GpsFix from the RMC and/or GGA of a cycle; null when neither has a position. */
export function assembleFix(rmc: RmcSentence | null, gga: GgaSentence | null, receivedAtMs: number): GpsFix | null {
  const from = rmc && rmc.lat !== null && rmc.lon !== null ? rmc : gga && gga.lat !== null && gga.lon !== null ? gga : null;
  if (!from || from.lat === null || from.lon === null) return null;
  // RMC status V, or the NMEA 2.3 mode indicator N, or GGA quality 0 all mean
  // "no fix"; receivers still repeat their last position then (SiRF, MTK), so
  // the position is kept and flagged rather than dropped.
  const rmcValid = rmc ? rmc.status === 'A' && rmc.mode !== 'N' : true;
  const ggaValid = gga ? gga.quality > 0 : true;
  return {
    valid: rmcValid && ggaValid,
    lat: from.lat,
    lon: from.lon,
    altM: gga?.altM ?? null,
    speedMps: rmc?.speedMps ?? null,
    trackDeg: rmc?.trackDeg ?? null,
    time: utcTime(rmc),
    sats: gga?.sats ?? null,
    hdop: gga?.hdop ?? null,
    receivedAtMs,
  };
}

// Only RMC carries a date; GGA's time of day alone is not a time.
function utcTime(rmc: RmcSentence | null): Date | null {
  if (!rmc || !rmc.date || rmc.timeOfDayMs === null) return null;
  const { year, month, day } = rmc.date;
  const midnight = Date.UTC(year, month - 1, day);
  // Date.UTC rolls 31 Feb over into March; such a date is corrupt, not a time.
  if (new Date(midnight).getUTCDate() !== day) return null;
  return new Date(midnight + rmc.timeOfDayMs);
}
