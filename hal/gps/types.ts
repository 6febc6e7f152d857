// A position fix as the GPS reader reports it (see fix-assembler.ts for when).
// hal/ knows nothing of the wire format; firmware/position turns this into
// the protocol's Fix with its age.

/** gpsd's fix modes: 1 no fix, 2 horizontal only, 3 with altitude. */
export type FixMode = 1 | 2 | 3;

export interface GpsFix {
  /** True iff mode ≥ 2: the receiver has a fix. */
  valid: boolean;
  /**
   * 2 or 3 as gpsd would report it. 1 when the receiver sent a position but
   * says it has no fix (status V, quality 0): the position is its last guess.
   */
  mode: FixMode;
  /** Degrees, WGS84, south/west negative. */
  lat: number;
  lon: number;
  /** Altitude above mean sea level, metres (same as altMSL; kept for older readers). */
  altM: number | null;
  /** Altitude above mean sea level (the geoid), metres; null if unknown. */
  altMSL: number | null;
  /**
   * Altitude above the WGS84 ellipsoid, metres; null unless the receiver gave
   * it or the geoid height to compute it (gpsd also fills it from its own
   * geoid model, which busguard does not carry).
   */
  altHAE: number | null;
  /** Speed over ground, metres per second; null if unknown. */
  speedMps: number | null;
  /** Course over ground, degrees true [0, 360); null if unknown. */
  trackDeg: number | null;
  /** UTC time of the fix; null until the receiver has sent a date (RMC or ZDA). */
  time: Date | null;
  /** Satellites used in the solution (GSA, else GGA); null if unknown. */
  sats: number | null;
  /** Horizontal dilution of precision; null if unknown. */
  hdop: number | null;
  /**
   * Estimated horizontal error, metres (95 %): the receiver's own estimate
   * ($PSRFEPE) or HDOP × 19 m (4.75 m with DGPS) as gpsd computes it; null if unknown.
   */
  eph: number | null;
  /** Estimated vertical error, metres (95 %), for 3D fixes: the receiver's ($PGRME, $PSRFEPE, GBS) or VDOP × 23 m; null if unknown. */
  epv: number | null;
  /** Monotonic milliseconds (performance.now()) at which the fix was assembled. */
  receivedAtMs: number;
}
