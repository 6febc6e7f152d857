// The gst-launch-1.0 command line of a recorder, and the lines it prints.
//
// gst-launch-1.0 hands its arguments to gst_parse_launchv(), which escapes
// each one as a single token: "a ! b" passed as one argument is a syntax
// error. So the source fragment from the config is split the way a shell
// would split it (quotes removed, spaces inside quotes kept), and whatever
// works after `gst-launch-1.0` in a terminal works in the config.

/** splitmuxsink file names: seg00000.mkv … Numbers wrap (max-files), so never order by them. */
export const SEGMENT_PREFIX = 'seg';
export const SEGMENT_EXT = '.mkv';
export const SEGMENT_NAME = /^seg(\d{5,})\.mkv$/;

export interface RecorderPipelineOptions {
  /** Source fragment, shell-quoted as on a gst-launch-1.0 command line. */
  source: string;
  dir: string;
  segmentS: number;
  keyframeIntervalS: number;
  /** Frame rate the encoder sees (from the source's caps, or forced with videorate). */
  fps: number;
  /** Insert videorate to `fps` (the source's caps name no frame rate). */
  addVideorate: boolean;
  /** splitmuxsink max-files: how many file numbers it cycles through. */
  fileNumbers: number;
  startIndex: number;
  /** Encoder fragment replacing the default x264enc (shell-quoted); must output H.264. */
  encoder?: string;
  speedPreset: string;
  bitrateKbps?: number;
}

/** Split a gst-launch description like a POSIX shell: whitespace separates, '…' and "…" group, \ escapes. */
export function splitGstDescription(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inToken = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === "'") {
      if (c === "'") quote = null;
      else cur += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1]!)) cur += text[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inToken = true;
    } else if (c === '\\' && i + 1 < text.length) {
      cur += text[++i];
      inToken = true;
    } else if (/\s/.test(c)) {
      if (inToken) out.push(cur);
      cur = '';
      inToken = false;
    } else {
      cur += c;
      inToken = true;
    }
  }
  if (quote) throw new Error(`video source: unbalanced ${quote} in "${text}"`);
  if (inToken) out.push(cur);
  return out;
}

/** The frame rate named by the last framerate=N/D in the source's caps, or null. */
export function sourceFramerate(source: string): number | null {
  const all = [...source.matchAll(/framerate=(?:\(fraction\))?(\d+)\/(\d+)/g)];
  const last = all.at(-1);
  if (!last) return null;
  const fps = Number(last[1]) / Number(last[2]);
  return Number.isFinite(fps) && fps > 0 ? fps : null;
}

/**
 * Reject a source fragment that cannot work as the head of our pipeline,
 * with what to change. Returns the tokens.
 */
export function checkSource(camera: string, source: string): string[] {
  const tokens = splitGstDescription(source);
  if (tokens.length === 0) throw new Error(`video camera ${camera}: empty source pipeline; set e.g. "v4l2src device=/dev/video0" in the config`);
  if (tokens[0] === '!' || tokens.at(-1) === '!') {
    throw new Error(`video camera ${camera}: source "${source}" starts or ends with "!"; give only the source part, the recorder adds the encoder and the segment sink`);
  }
  if (/\b(splitmuxsink|filesink|multifilesink|fakesink|autovideosink)\b/.test(source)) {
    throw new Error(`video camera ${camera}: source "${source}" contains a sink; give only the source part, the recorder adds the encoder and the segment sink`);
  }
  // A non-live videotestsrc runs as fast as the CPU allows: running times
  // would not be wall-clock times, and gst-launch 1.22 may hang at its EOS.
  if (/\bvideotestsrc\b/.test(source) && !/\bis-live=(true|1)\b/.test(source)) {
    throw new Error(`video camera ${camera}: videotestsrc without is-live=true runs faster than real time, so segment times would be wrong; add is-live=true`);
  }
  return tokens;
}

/** gst-launch-1.0 arguments: -e (EOS on SIGINT, so the open segment is finalised) and -m (bus messages on stdout). */
export function recorderArgs(o: RecorderPipelineOptions): string[] {
  // % would be read as part of splitmuxsink's file name pattern.
  if (/["\\%]/.test(o.dir)) throw new Error(`video recorder: segment folder ${o.dir} contains ", \\ or %; choose a plain path`);
  // Rounded down: the keyframe interval is the clip's start tolerance, a promise not to exceed.
  const kfFrames = Math.max(1, Math.floor(o.keyframeIntervalS * o.fps + 1e-9));
  const encoder = o.encoder
    ? splitGstDescription(o.encoder)
    : [
        'x264enc',
        // zerolatency: no B-frames and no lookahead, so a frame is on disk about
        // one GOP after it was seen, and a cut can end on any frame.
        'tune=zerolatency',
        `speed-preset=${o.speedPreset}`,
        `key-int-max=${kfFrames}`,
        ...(o.bitrateKbps ? [`bitrate=${Math.round(o.bitrateKbps)}`] : []),
      ];
  return [
    '-e',
    '-m',
    ...splitGstDescription(o.source),
    '!',
    // A slow encoder must not hold up a live source: drop the oldest frames
    // rather than let latency (and the segment clock) drift.
    'queue',
    'leaky=downstream',
    'max-size-buffers=0',
    'max-size-bytes=0',
    'max-size-time=1000000000',
    '!',
    ...(o.addVideorate ? ['videorate', '!', `video/x-raw,framerate=${Math.round(o.fps * 1000)}/1000`, '!'] : []),
    'videoconvert',
    '!',
    // 4:2:0: what every player and browser decodes (x264 would keep 4:4:4 input as High 4:4:4).
    'video/x-raw,format=I420',
    '!',
    ...encoder,
    '!',
    'h264parse',
    '!',
    'splitmuxsink',
    'name=ring',
    `location=${o.dir}/${SEGMENT_PREFIX}%05d${SEGMENT_EXT}`,
    // Matroska: a segment cut off by a crash or a kill is readable up to its
    // last written frame; an mp4mux segment without its moov is lost whole.
    'muxer-factory=matroskamux',
    // sink-properties only apply with async-finalize. Unbuffered: filesink's
    // default 64 KiB buffer would lose seconds of low-bitrate video on a kill.
    'async-finalize=true',
    'sink-properties=properties,buffer-mode=2',
    `max-size-time=${Math.round(o.segmentS * 1e9)}`,
    // Ask the encoder for a keyframe at each split, so segments keep their length
    // even if the encoder's own interval drifts.
    'send-keyframe-requests=true',
    // max-files only wraps the numbers; the ring itself is kept by SegmentRing,
    // which unlinks old files long before a number comes round again.
    `max-files=${o.fileNumbers}`,
    `start-index=${o.startIndex}`,
  ];
}

export type GstLine =
  | { kind: 'fragment-opened' | 'fragment-closed'; name: string; number: number; runningTimeNs: number }
  | { kind: 'clock' }
  | { kind: 'eos' }
  | { kind: 'error'; text: string };

const FRAGMENT = /splitmuxsink-fragment-(opened|closed), location=\(string\)(.*?), running-time=\(guint64\)(\d+)/;
const FILE_IN_LOCATION = /(seg(\d{5,})\.mkv)/;

/** What a line of gst-launch-1.0 -m output (stdout or stderr) tells the recorder, or null. */
export function parseGstLine(line: string): GstLine | null {
  const f = FRAGMENT.exec(line);
  if (f) {
    // The location may come quoted with escapes; only the file name matters.
    const file = FILE_IN_LOCATION.exec(f[2]!);
    if (!file) return null;
    return { kind: f[1] === 'opened' ? 'fragment-opened' : 'fragment-closed', name: file[1]!, number: Number(file[2]), runningTimeNs: Number(f[3]) };
  }
  // The pipeline picks its clock as it goes to PLAYING, which is when running time 0 is fixed.
  if (line.includes('(new-clock)') || line.startsWith('New clock:')) return { kind: 'clock' };
  if (line.startsWith('Got EOS from element')) return { kind: 'eos' };
  if (line.startsWith('ERROR:') || line.startsWith('WARNING: erroneous pipeline')) return { kind: 'error', text: line.trim() };
  return null;
}
