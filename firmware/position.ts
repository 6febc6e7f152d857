// The latest fix as the rest of the agent sees it: with its age and a stale
// flag, so an alarm raised in a tunnel still says where the bus last was and
// how long ago. An alarm without any fix is raised all the same (fix: null).

import type { GpsFix } from '../hal/gps/types.ts';
import type { Fix } from '../protocol/messages.ts';

export interface FixSource {
  latest(): GpsFix | null;
}

export function describeFix(source: FixSource | null, staleAfterS: number, nowMs = performance.now()): Fix | null {
  const f = source?.latest() ?? null;
  return f ? toFix(f, staleAfterS, nowMs) : null;
}

/** A receiver's fix as the protocol carries it, with its age at nowMs. */
export function toFix(f: GpsFix, staleAfterS: number, nowMs = performance.now()): Fix {
  const ageS = Math.max(0, Math.round((nowMs - f.receivedAtMs) / 100) / 10);
  return {
    valid: f.valid,
    lat: f.lat,
    lon: f.lon,
    altM: f.altM,
    speedMps: f.speedMps,
    trackDeg: f.trackDeg,
    time: f.time ? f.time.toISOString() : null,
    ageS,
    stale: ageS > staleAfterS,
    sats: f.sats,
    hdop: f.hdop,
  };
}
