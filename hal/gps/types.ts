// A position fix as the GPS reader assembles it from one reporting cycle.
// hal/ knows nothing of the wire format; firmware/position turns this into
// the protocol's Fix with its age.

export interface GpsFix {
  /** RMC status 'A' (and GGA quality > 0 when both were seen in the cycle). */
  valid: boolean;
  /** Degrees, WGS84, south/west negative. */
  lat: number;
  lon: number;
  /** GGA altitude above mean sea level, metres; null if no GGA in the cycle. */
  altM: number | null;
  /** Speed over ground, metres per second (from RMC knots); null if unknown. */
  speedMps: number | null;
  /** Course over ground, degrees true [0, 360); null if unknown. */
  trackDeg: number | null;
  /** UTC time of the fix from the receiver (RMC date + time); null if the date is unknown. */
  time: Date | null;
  /** GGA satellites in use; null if unknown. */
  sats: number | null;
  /** GGA horizontal dilution of precision; null if unknown. */
  hdop: number | null;
  /** Monotonic milliseconds (performance.now()) at which the fix was assembled. */
  receivedAtMs: number;
}
