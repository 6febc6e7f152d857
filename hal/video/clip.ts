// Cut [fromMs, toMs] out of a list of segments and remux it into one MP4
// with the place and the gaps in its metadata, plus a GeoJSON sidecar.
//
// - Segments are joined in time order (startMs), never by name: ring file
//   numbers wrap, and splitmuxsrc's order by name is wrong after a wrap.
// - Stream copy, no re-encode: the clip starts at the last keyframe at or
//   before fromMs, so it may begin up to one keyframe interval early. That
//   is the stated tolerance; an inpoint between keyframes would put
//   undecodable frames at the head of the clip (ffmpeg concat demuxer docs).
// - Every file gets an inpoint and an outpoint from its own packets: a
//   segment cut off by a kill has no duration in its header and the last
//   segment of a run may have no start time, and the concat demuxer would
//   otherwise misplace the files after it.
// - A hole between segments (the recorder was down) is not closed up
//   silently: it is listed in the clip's comment ("busguard:gaps", wall-clock
//   UTC ms) and description, and the "busguard:timeline" says which wall
//   time each stretch of the clip shows.

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { fsyncFile, renameDurably, writeFileDurably } from '../../common/durable-file.ts';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { type MediaTools, type VideoPackets, probeFormat, probeVideoPackets, runTool } from './ffprobe.ts';
import { type GeoPoint, type TrackPoint, clipTrackGeoJson, isValidGeoPoint } from './track-geojson.ts';
import { errText } from '../../common/errors.ts';
import { hashFile } from '../../common/hash.ts';

export type { GeoPoint, TrackPoint } from './track-geojson.ts';

/** A segment file and the wall-clock span it holds (endMs null: not known yet; read from its packets). */
export interface ClipSegment {
  path: string;
  startMs: number;
  endMs: number | null;
}

export interface CutClipOptions {
  /** Pinned segments (any order). */
  segments: readonly ClipSegment[];
  fromMs: number;
  toMs: number;
  /** The MP4 to write (replaced atomically). The sidecar goes beside it as .geojson. */
  out: string;
  /** The fix to tag the clip with (ISO 6709 location). */
  location?: GeoPoint | null;
  /** The moment the clip is about (an alarm's press); marks the sidecar's point. */
  pressMs?: number;
  /** The bus's track; the part over the clip goes into the sidecar. */
  track?: readonly TrackPoint[];
  /** Written under "busguard:meta" in the clip's comment and the sidecar (alarm id, vehicle, camera…). */
  meta?: Record<string, unknown>;
  /**
   * The recorder's outages (RecordingGap: from, to, why): those overlapping
   * the window are written under "busguard:outages" and name the reason of
   * each hole in the description ("the agent was not running", "gst-launch-1.0
   * killed by SIGKILL"), so a clip says what a stop cost, not only where.
   */
  outages?: readonly { fromMs: number; toMs: number | null; reason: string }[];
  /** A hole between segments longer than this is a gap. Default 250 ms (within a run segments join exactly). */
  gapToleranceMs?: number;
  tools?: MediaTools & { ffmpegTimeoutMs?: number };
}

export interface ClipResult {
  file: string;
  sidecar: string;
  sha256: string;
  bytes: number;
  /** The MP4's duration as ffprobe reads it. */
  durationS: number;
  /** Parts of [fromMs, toMs] with no video, wall-clock UTC ms. */
  gaps: [number, number][];
  /** Wall-clock span from the first to the last frame in the clip. */
  coveredFromMs: number;
  coveredToMs: number;
  /** Each stretch of the clip: [wallFromMs, wallToMs, offset in the clip (s)]. */
  timeline: [number, number, number][];
  segments: number;
}

export type ClipErrorKind = 'input' | 'not-covered' | 'ffmpeg';

export class ClipError extends Error {
  override readonly name = 'ClipError';
  constructor(
    readonly kind: ClipErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** ISO 6709 as ffmpeg's mov muxer reads it: ±DD.DDDD±DDD.DDDD[±AAA.A]/ (4 decimals: the MP4 'loci' box keeps no more, about 11 m). */
export function iso6709(p: GeoPoint): string {
  const sign = (x: number) => (x < 0 ? '-' : '+');
  const lat = `${sign(p.lat)}${Math.abs(p.lat).toFixed(4).padStart(7, '0')}`;
  const lon = `${sign(p.lon)}${Math.abs(p.lon).toFixed(4).padStart(8, '0')}`;
  const alt = p.altM === undefined ? '' : `${sign(p.altM)}${Math.abs(p.altM).toFixed(1)}`;
  return `${lat}${lon}${alt}/`;
}

/** Parse an ISO 6709 string such as ffprobe prints it ("+34.2610+108.9420+420.500000/"). */
export function parseIso6709(text: string): GeoPoint | null {
  const m = /^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?\/?$/.exec(text.trim());
  if (!m) return null;
  const p: GeoPoint = { lat: Number(m[1]), lon: Number(m[2]) };
  if (m[3] !== undefined) p.altM = Number(m[3]);
  return isValidGeoPoint(p) ? p : null;
}

interface Piece {
  path: string;
  inS: number;
  outS: number;
  wallFromMs: number;
  wallToMs: number;
}

/** Cut, remux, tag and checksum one clip. Throws ClipError('not-covered') when no segment overlaps the window. */
export async function cutClip(o: CutClipOptions): Promise<ClipResult> {
  if (!Number.isFinite(o.fromMs) || !Number.isFinite(o.toMs) || o.toMs <= o.fromMs) {
    throw new ClipError('input', `clip ${o.out}: window [${o.fromMs}, ${o.toMs}] is empty or not a number; fromMs must be before toMs`);
  }
  if (o.location && !isValidGeoPoint(o.location)) {
    throw new ClipError('input', `clip ${o.out}: location ${JSON.stringify(o.location)} is not a valid latitude/longitude`);
  }
  const tolerance = o.gapToleranceMs ?? 250;
  const tools = o.tools ?? {};

  const candidates = [...o.segments].filter((s) => (s.endMs ?? Infinity) > o.fromMs && s.startMs < o.toMs).sort((a, b) => a.startMs - b.startMs);
  const probed = await mapLimit(candidates, 2, async (s) => ({ seg: s, packets: await probeVideoPackets(s.path, tools) }));
  const pieces: Piece[] = [];
  for (const { seg, packets } of probed) {
    if (!packets) continue;
    const piece = pieceOf(seg, packets, o.fromMs, o.toMs, pieces.at(-1)?.wallToMs ?? null, tolerance);
    if (piece) pieces.push(piece);
  }
  if (pieces.length === 0) {
    throw new ClipError('not-covered', `clip ${o.out}: no recorded video between ${iso(o.fromMs)} and ${iso(o.toMs)} in the ${o.segments.length} segment(s) given`);
  }

  const gaps = gapsOf(pieces, o.fromMs, o.toMs, tolerance);
  const timeline: [number, number, number][] = [];
  let offsetS = 0;
  for (const p of pieces) {
    timeline.push([round3(p.wallFromMs), round3(p.wallToMs), round3(offsetS)]);
    offsetS += p.outS - p.inS;
  }
  const coveredFromMs = pieces[0]!.wallFromMs;
  const coveredToMs = pieces.at(-1)!.wallToMs;
  const outages = (o.outages ?? [])
    .filter((g) => g.fromMs < o.toMs && (g.toMs ?? Infinity) > o.fromMs)
    .map((g) => ({ fromMs: round3(Math.max(g.fromMs, o.fromMs)), toMs: round3(Math.min(g.toMs ?? o.toMs, o.toMs)), reason: g.reason }));
  const why = ([a, b]: [number, number]) => outages.find((g) => g.fromMs < b && g.toMs > a)?.reason;
  const comment = JSON.stringify({
    'busguard:window': [o.fromMs, o.toMs],
    'busguard:covered': [round3(coveredFromMs), round3(coveredToMs)],
    'busguard:gaps': gaps,
    ...(outages.length ? { 'busguard:outages': outages } : {}),
    'busguard:timeline': timeline,
    ...(o.location ? { 'busguard:location': o.location } : {}),
    ...(o.pressMs !== undefined ? { 'busguard:press': o.pressMs } : {}),
    ...(o.meta ? { 'busguard:meta': o.meta } : {}),
  });
  const description =
    `busguard clip ${iso(coveredFromMs)} to ${iso(coveredToMs)}; ` +
    (gaps.length === 0
      ? 'no gaps in the recording'
      : `NO VIDEO ${gaps.map((g) => `${iso(g[0])} to ${iso(g[1])} (${((g[1] - g[0]) / 1000).toFixed(1)} s${why(g) ? `: ${why(g)}` : ''})`).join(', ')}`);

  const work = await mkdtemp(join(tmpdir(), 'busguard-clip-'));
  const tmpOut = join(dirname(o.out), `.${basename(o.out)}.${process.pid}-${randomBytes(4).toString('hex')}.part`);
  try {
    const list = join(work, 'segments.ffconcat');
    await writeFile(list, ['ffconcat version 1.0', ...pieces.flatMap((p) => [`file ${concatQuote(p.path)}`, `inpoint ${p.inS.toFixed(6)}`, `outpoint ${p.outS.toFixed(6)}`])].join('\n') + '\n');
    const args = [
      '-v', 'error', '-y',
      '-f', 'concat', '-safe', '0', '-i', list,
      '-map', '0', '-c', 'copy',
      '-map_metadata', '-1',
      // moov first: a clip sent in chunks can be played before its last chunk.
      '-movflags', '+faststart',
      '-metadata', `creation_time=${new Date(coveredFromMs).toISOString()}`,
      ...(o.location ? ['-metadata', `location=${iso6709(o.location)}`] : []),
      '-metadata', `comment=${comment}`,
      '-metadata', `description=${description}`,
      '-f', 'mp4', tmpOut,
    ];
    try {
      await runTool(tools.ffmpeg ?? 'ffmpeg', args, tools.ffmpegTimeoutMs ?? 120_000, `clip ${o.out}`);
    } catch (err) {
      throw new ClipError('ffmpeg', errText(err), { cause: err });
    }
    // ffmpeg does not fsync: the clip is on flash before it takes its name, and the name before it is queued.
    await fsyncFile(tmpOut);
    await renameDurably(tmpOut, o.out);
  } finally {
    await rm(work, { recursive: true, force: true });
    await rm(tmpOut, { force: true });
  }

  const [format, sha256, st] = await Promise.all([probeFormat(o.out, tools), hashFile(o.out).then((h) => h.sha256), stat(o.out)]);
  const sidecar = o.out.replace(/\.[^./]*$/, '') + '.geojson';
  const geo = clipTrackGeoJson({
    track: o.track ?? [],
    fromMs: coveredFromMs,
    toMs: coveredToMs,
    location: o.location ?? null,
    pointRole: o.pressMs !== undefined ? 'press' : 'request',
    ...(o.pressMs !== undefined ? { pointMs: o.pressMs } : {}),
    properties: { clip: basename(o.out), sha256, window: [o.fromMs, o.toMs], gaps, ...(o.meta ? { meta: o.meta } : {}) },
  });
  await writeFileDurably(sidecar, JSON.stringify(geo));
  return {
    file: o.out,
    sidecar,
    sha256,
    bytes: st.size,
    durationS: format.durationS ?? offsetS,
    gaps,
    coveredFromMs,
    coveredToMs,
    timeline,
    segments: pieces.length,
  };
}

/**
 * The part of one segment that goes into the clip, in its own timestamps.
 * `lowerMs`: where the clip is so far (the previous piece's end), or null for the first.
 */
function pieceOf(seg: ClipSegment, p: VideoPackets, fromMs: number, toMs: number, lowerMs: number | null, toleranceMs: number): Piece | null {
  const wall = (pts: number) => seg.startMs + (pts - p.firstPtsS) * 1000;
  const lower = Math.max(fromMs, lowerMs ?? -Infinity);
  let inS = p.firstPtsS;
  if (lower - seg.startMs > toleranceMs) {
    // Start on the last keyframe at or before the lower bound.
    const target = p.firstPtsS + (lower - seg.startMs) / 1000 + 1e-6;
    for (const k of p.keyframesS) if (k <= target) inS = k;
  }
  let outS = p.endPtsS;
  if (wall(p.endPtsS) > toMs) outS = p.firstPtsS + (toMs - seg.startMs) / 1000;
  if (outS - inS <= 1e-6) return null;
  return { path: seg.path, inS, outS, wallFromMs: wall(inS), wallToMs: wall(outS) };
}

function gapsOf(pieces: readonly Piece[], fromMs: number, toMs: number, toleranceMs: number): [number, number][] {
  const gaps: [number, number][] = [];
  let cursor = fromMs;
  for (const p of pieces) {
    if (p.wallFromMs - cursor > toleranceMs) gaps.push([round3(cursor), round3(p.wallFromMs)]);
    cursor = Math.max(cursor, p.wallToMs);
  }
  if (toMs - cursor > toleranceMs) gaps.push([round3(cursor), round3(toMs)]);
  return gaps;
}

/** The ffconcat quoting: inside '…' only ' needs care, as '\''. */
function concatQuote(path: string): string {
  return `'${path.replace(/'/g, "'\\''")}'`;
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function iso(ms: number): string {
  return new Date(Math.round(ms)).toISOString();
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

