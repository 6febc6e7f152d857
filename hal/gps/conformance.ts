// How far a GPS reader agrees with gpsd on one receiver capture. gpsd's
// regression suite stores, beside each capture X.log, what gpsd reported
// for it (X.log.chk: each sentence followed by the JSON gpsd emitted); the
// TPV lines are its fixes. Three figures, per capture and summed:
//   matched   every distinct position gpsd reports (mode 2 or 3, rounded
//             to 1e-6 degrees) is reported by the reader with mode 2 or 3
//             (at any time: positions before the first date have none);
//   invented  positions the reader reports (mode 2 or 3) that gpsd never
//             does; the target is none;
//   time      every gpsd TPV with a time and a position has, at that same
//             UTC time (to the millisecond), a reader fix with the same
//             position and the same mode (2D vs 3D).
// Positions are compared rounded to 1e-6 degrees (about 11 cm). Two values
// within 1e-8 of each other also count as the same position even when they
// round to neighbouring micro-degrees: gpsd prints 9 decimals, and a double
// a hair below a rounding edge must not make the figures flicker; readers
// that decode positions with other float arithmetic (the npm parsers) are
// judged fairly the same way.

/** One gpsd TPV as far as the figures go. */
export interface GpsdTpv {
  mode: number;
  /** UTC milliseconds, or null when gpsd had no time. */
  timeMs: number | null;
  /** Present only when gpsd printed a position (mode ≥ 2). */
  lat: number | null;
  lon: number | null;
}

/** What a reader reported, as far as the figures go. */
export interface ReportedFix {
  mode: number;
  lat: number;
  lon: number;
  time: Date | null;
}

export interface Agreement {
  /** Distinct positions gpsd reports with mode ≥ 2. */
  gpsdPositions: number;
  /** Of those, reported by the reader with mode ≥ 2. */
  matched: number;
  /** Distinct reader positions (mode ≥ 2) that gpsd never reports. */
  invented: number;
  /** gpsd TPVs with a time and a position. */
  timed: number;
  /** Of those, with a reader fix at the same time, position and mode. */
  timeAgreed: number;
  /** A few examples of what went wrong, for the person reading a failure. */
  missedExamples: string[];
  inventedExamples: string[];
  timeExamples: string[];
}

const TPV_PREFIX = '{"class":"TPV"';
/** The rounding unit of a position. */
const UNIT_DEG = 1e-6;
/** Closer than this is the same value, whatever the rounding says. */
const SAME_DEG = 1e-8;
const EXAMPLES = 5;

interface TpvJson {
  mode?: number;
  time?: string;
  lat?: number;
  lon?: number;
}

/** The TPV reports in a gpsd .chk file, in order. */
export function parseChk(text: string): GpsdTpv[] {
  const out: GpsdTpv[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(TPV_PREFIX)) continue;
    const j = JSON.parse(line) as TpvJson;
    const t = j.time === undefined ? NaN : Date.parse(j.time);
    const positioned = (j.mode ?? 0) >= 2 && typeof j.lat === 'number' && typeof j.lon === 'number';
    out.push({
      mode: j.mode ?? 0,
      timeMs: Number.isNaN(t) ? null : t,
      lat: positioned ? (j.lat as number) : null,
      lon: positioned ? (j.lon as number) : null,
    });
  }
  return out;
}

/**
 * The bytes gpsd read when gpsd's test harness (gpsfake) played a capture:
 * for a normal capture, its sentences and its '# Date:' comment, which the
 * replay sees the same way in the file itself. A capture with a
 * '# Delay-Cookie: <sep> <seconds>' header (the TCP/UDP transport tests)
 * is sent instead as the raw text after its header comments, written in
 * pieces cut at every <sep>: the separators are not sent, and neither is the
 * '# Date:' comment, so gpsd then dates the capture by the live clock.
 */
export function gpsfakeFeed(log: string): string {
  const cookie = /^#\s*Delay-Cookie:\s*(\S+)\s+\S+/m.exec(log);
  if (!cookie) return log;
  let headerLength = 0;
  for (const line of log.split('\n')) {
    if (line.startsWith('#')) headerLength += line.length + 1;
  }
  return log
    .slice(headerLength)
    .split(cookie[1] as string)
    .join('');
}

/** A position rounded to 1e-6 degrees, as a key. */
function cell(lat: number, lon: number): string {
  return `${Math.round(lat / UNIT_DEG)},${Math.round(lon / UNIT_DEG)}`;
}

/** Same rounded position, or the same value up to float noise. */
function samePosition(aLat: number, aLon: number, bLat: number, bLon: number): boolean {
  return cell(aLat, aLon) === cell(bLat, bLon) || (Math.abs(aLat - bLat) < SAME_DEG && Math.abs(aLon - bLon) < SAME_DEG);
}

/** Positions indexed by rounded position, to find the same one without a full scan. */
class PositionIndex {
  private readonly cells = new Map<string, Array<[number, number]>>();

  add(lat: number, lon: number): void {
    const k = cell(lat, lon);
    const list = this.cells.get(k);
    if (list) list.push([lat, lon]);
    else this.cells.set(k, [[lat, lon]]);
  }

  has(lat: number, lon: number): boolean {
    if (this.cells.has(cell(lat, lon))) return true;
    // A value a hair from a rounding edge may sit in a neighbouring cell.
    const la = Math.round(lat / UNIT_DEG);
    const lo = Math.round(lon / UNIT_DEG);
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) {
        for (const [bLat, bLon] of this.cells.get(`${la + dy},${lo + dx}`) ?? []) if (samePosition(lat, lon, bLat, bLon)) return true;
      }
    }
    return false;
  }
}

/** Distinct positions of a list, by 1e-6 grid cell. */
function distinct(points: Array<{ lat: number; lon: number }>): Map<string, { lat: number; lon: number }> {
  const m = new Map<string, { lat: number; lon: number }>();
  for (const p of points) {
    const k = cell(p.lat, p.lon);
    if (!m.has(k)) m.set(k, p);
  }
  return m;
}

/** The three figures for one capture: gpsd's TPVs against a reader's fixes. */
export function agreement(gpsd: GpsdTpv[], fixes: ReportedFix[]): Agreement {
  const gpsdFixed = gpsd.filter((t): t is GpsdTpv & { lat: number; lon: number } => t.lat !== null && t.lon !== null);
  const ours = fixes.filter((f) => f.mode >= 2 && Number.isFinite(f.lat) && Number.isFinite(f.lon));

  const ourIndex = new PositionIndex();
  for (const f of ours) ourIndex.add(f.lat, f.lon);
  const gpsdIndex = new PositionIndex();
  for (const t of gpsdFixed) gpsdIndex.add(t.lat, t.lon);

  const gpsdDistinct = distinct(gpsdFixed);
  const missedExamples: string[] = [];
  let matched = 0;
  for (const p of gpsdDistinct.values()) {
    if (ourIndex.has(p.lat, p.lon)) matched++;
    else if (missedExamples.length < EXAMPLES) missedExamples.push(`${p.lat.toFixed(7)},${p.lon.toFixed(7)}`);
  }

  const inventedExamples: string[] = [];
  let invented = 0;
  for (const p of distinct(ours).values()) {
    if (gpsdIndex.has(p.lat, p.lon)) continue;
    invented++;
    if (inventedExamples.length < EXAMPLES) inventedExamples.push(`${p.lat.toFixed(7)},${p.lon.toFixed(7)}`);
  }

  const byTime = new Map<number, ReportedFix[]>();
  for (const f of ours) {
    const t = f.time?.getTime();
    if (t === undefined) continue;
    const list = byTime.get(t);
    if (list) list.push(f);
    else byTime.set(t, [f]);
  }
  const timeExamples: string[] = [];
  let timed = 0;
  let timeAgreed = 0;
  for (const t of gpsdFixed) {
    if (t.timeMs === null) continue;
    timed++;
    const same = byTime.get(t.timeMs)?.some((f) => f.mode === t.mode && samePosition(f.lat, f.lon, t.lat, t.lon));
    if (same) timeAgreed++;
    else if (timeExamples.length < EXAMPLES) {
      const at = byTime.get(t.timeMs)?.map((f) => `${f.mode}D ${f.lat.toFixed(7)},${f.lon.toFixed(7)}`).join(' | ') ?? 'nothing';
      timeExamples.push(`${new Date(t.timeMs).toISOString()} gpsd ${t.mode}D ${t.lat.toFixed(7)},${t.lon.toFixed(7)}; reader: ${at}`);
    }
  }

  return { gpsdPositions: gpsdDistinct.size, matched, invented, timed, timeAgreed, missedExamples, inventedExamples, timeExamples };
}

/** Sum of per-capture figures (examples dropped). */
export function sumAgreements(list: Agreement[]): Agreement {
  const total: Agreement = { gpsdPositions: 0, matched: 0, invented: 0, timed: 0, timeAgreed: 0, missedExamples: [], inventedExamples: [], timeExamples: [] };
  for (const a of list) {
    total.gpsdPositions += a.gpsdPositions;
    total.matched += a.matched;
    total.invented += a.invented;
    total.timed += a.timed;
    total.timeAgreed += a.timeAgreed;
  }
  return total;
}

/** Percentages to two decimals; 100 when there is nothing to agree on. */
export function matchedPct(a: Agreement): number {
  return pct(a.matched, a.gpsdPositions);
}

export function timePct(a: Agreement): number {
  return pct(a.timeAgreed, a.timed);
}

function pct(part: number, whole: number): number {
  return whole === 0 ? 100 : Math.floor((10000 * part) / whole) / 100;
}

/** Whether a capture is fully in agreement: all matched, none invented, all times agreed. */
export function agrees(a: Agreement): boolean {
  return a.matched === a.gpsdPositions && a.invented === 0 && a.timeAgreed === a.timed;
}
