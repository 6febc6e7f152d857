// Distance on the WGS84 ellipsoid, for speed over ground from two fixes
// when the receiver does not send one (GGA-only receivers). Vincenty's
// inverse formula (T. Vincenty, Survey Review XXIII, 1975): millimetre
// accurate, which is what gpsd uses too, so the speeds agree with its TPVs.

const A = 6378137.0; // semi-major axis, metres
const F = 1 / 298.257223563; // flattening
const B = 6356752.314245; // semi-minor axis, metres
const RAD = Math.PI / 180;

/** Metres between two points in degrees; 0 for the same point, NaN when the iteration does not converge (nearly antipodal points). */
export function ellipsoidDistanceM(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const L = (lon2 - lon1) * RAD;
  const U1 = Math.atan((1 - F) * Math.tan(lat1 * RAD));
  const U2 = Math.atan((1 - F) * Math.tan(lat2 * RAD));
  const sinU1 = Math.sin(U1);
  const cosU1 = Math.cos(U1);
  const sinU2 = Math.sin(U2);
  const cosU2 = Math.cos(U2);
  let lambda = L;
  let sinSigma = 0;
  let cosSigma = 0;
  let sigma = 0;
  let cos2Alpha = 0;
  let cos2SigmaM = 0;
  for (let i = 0; ; i++) {
    if (i === 100) return NaN;
    const sinLambda = Math.sin(lambda);
    const cosLambda = Math.cos(lambda);
    const p = cosU2 * sinLambda;
    const q = cosU1 * sinU2 - sinU1 * cosU2 * cosLambda;
    sinSigma = Math.sqrt(p * p + q * q);
    if (sinSigma === 0) return 0;
    cosSigma = sinU1 * sinU2 + cosU1 * cosU2 * cosLambda;
    sigma = Math.atan2(sinSigma, cosSigma);
    const sinAlpha = (cosU1 * cosU2 * sinLambda) / sinSigma;
    cos2Alpha = 1 - sinAlpha * sinAlpha;
    cos2SigmaM = cosSigma - (2 * sinU1 * sinU2) / cos2Alpha;
    // On the equator cos²α is 0: the term does not apply.
    if (!Number.isFinite(cos2SigmaM)) cos2SigmaM = 0;
    const C = (F / 16) * cos2Alpha * (4 + F * (4 - 3 * cos2Alpha));
    const previous = lambda;
    lambda = L + (1 - C) * F * sinAlpha * (sigma + C * sinSigma * (cos2SigmaM + C * cosSigma * (2 * cos2SigmaM * cos2SigmaM - 1)));
    if (!(Math.abs(lambda - previous) > 1e-12)) break;
  }
  const uSq = (cos2Alpha * (A * A - B * B)) / (B * B);
  const a = 1 + (uSq / 16384) * (4096 + uSq * (-768 + uSq * (320 - 175 * uSq)));
  const b = (uSq / 1024) * (256 + uSq * (-128 + uSq * (74 - 47 * uSq)));
  const deltaSigma =
    b * sinSigma * (cos2SigmaM + (b / 4) * (cosSigma * (-1 + 2 * cos2SigmaM * cos2SigmaM) - (b / 6) * cos2SigmaM * (-3 + 4 * sinSigma * sinSigma) * (-3 + 4 * cos2SigmaM * cos2SigmaM)));
  return B * a * (sigma - deltaSigma);
}
