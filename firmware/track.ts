// Track thinning, as fleet trackers do it: a 1 Hz receiver on a bus stuck in
// traffic would otherwise fill the link and the disk with the same point. A
// fix becomes a track point when it is the first, when the bus has moved far
// enough or turned enough since the last point (but never more often than
// minIntervalS), or when maxGapS has passed (a heartbeat, even standing still).
// While an emergency is open the heartbeat is the alarm rate instead.

import type { GpsFix } from '../hal/gps/types.ts';

export interface ThinningRules {
  /** Never two points closer in time than this (seconds). */
  minIntervalS: number;
  /** Moved at least this far (metres) since the last point. */
  minDistanceM: number;
  /** Turned at least this much (degrees) since the last point, while moving. */
  headingChangeDeg: number;
  /** A point at least this often, whatever the movement (seconds). */
  maxGapS: number;
}

export type ThinReason = 'first' | 'distance' | 'heading' | 'heartbeat';

/** Below this speed the receiver's course is noise, not a turn (m/s, ~3.6 km/h). */
const MIN_SPEED_FOR_HEADING_MPS = 1;
const EARTH_RADIUS_M = 6_371_008.8;

/** Great-circle distance in metres (haversine). */
export function distanceM(aLat: number, aLon: number, bLat: number, bLon: number): number {
  const rad = Math.PI / 180;
  const dLat = (bLat - aLat) * rad;
  const dLon = (bLon - aLon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(aLat * rad) * Math.cos(bLat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** Smallest angle between two headings, 0..180. */
export function headingDelta(a: number, b: number): number {
  const d = Math.abs(a - b) % 360;
  return d > 180 ? 360 - d : d;
}

export class TrackThinner {
  private last: { lat: number; lon: number; trackDeg: number | null; atMs: number } | null = null;

  constructor(private readonly rules: ThinningRules) {}

  /**
   * Whether this fix becomes a track point, and why; null = dropped. Fixes
   * without a valid position never do. `heartbeatS` overrides maxGapS (the
   * alarm rate while an emergency is open).
   */
  offer(fix: GpsFix, heartbeatS: number = this.rules.maxGapS): ThinReason | null {
    if (!fix.valid) return null;
    const at = fix.receivedAtMs;
    const last = this.last;
    let reason: ThinReason | null = null;
    if (!last) reason = 'first';
    else {
      const elapsedS = (at - last.atMs) / 1000;
      if (elapsedS >= heartbeatS) reason = 'heartbeat';
      else if (elapsedS >= this.rules.minIntervalS) {
        if (distanceM(last.lat, last.lon, fix.lat, fix.lon) >= this.rules.minDistanceM) reason = 'distance';
        else if (
          last.trackDeg !== null &&
          fix.trackDeg !== null &&
          (fix.speedMps ?? 0) >= MIN_SPEED_FOR_HEADING_MPS &&
          headingDelta(last.trackDeg, fix.trackDeg) >= this.rules.headingChangeDeg
        ) {
          reason = 'heading';
        }
      }
    }
    if (reason) this.last = { lat: fix.lat, lon: fix.lon, trackDeg: fix.trackDeg, atMs: at };
    return reason;
  }
}
