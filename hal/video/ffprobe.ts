// ffprobe and ffmpeg as child processes with deadlines, and the few facts
// the recorder and the clip cutter read from media files.

import { execFile } from 'node:child_process';

export interface MediaTools {
  /** Default 'ffmpeg'. */
  ffmpeg?: string;
  /** Default 'ffprobe'. */
  ffprobe?: string;
  /** Deadline of one ffprobe run. Default 15000 ms. */
  probeTimeoutMs?: number;
}

export class MediaToolError extends Error {
  override readonly name = 'MediaToolError';
}

/** Run a tool; reject with its exit and the tail of its stderr. */
export function runTool(cmd: string, args: readonly string[], timeoutMs: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: number | string };
      const tail = String(stderr).trim().split('\n').slice(-3).join(' | ');
      if (e.code === 'ENOENT') reject(new MediaToolError(`${what}: ${cmd} not found; install ffmpeg (apt-get install ffmpeg)`));
      else if (e.killed) reject(new MediaToolError(`${what}: ${cmd} did not finish within ${timeoutMs} ms`));
      else reject(new MediaToolError(`${what}: ${cmd} exited with ${String(e.code)}${tail ? `: ${tail}` : ''}`));
    });
  });
}

export interface VideoPackets {
  /** Timestamp of the first video packet, in the file's own time base (s). */
  firstPtsS: number;
  /** Just past the last video packet: its pts plus its duration (s). */
  endPtsS: number;
  /** Timestamps of the keyframes, ascending (s). */
  keyframesS: number[];
  packets: number;
}

/**
 * The video packets of a file: where it starts and ends and where its
 * keyframes are. Read from the packets, not the container header: a segment
 * cut off by a kill has no duration in its header, and the last segment of a
 * run may have no start time. Null when the file holds no readable video.
 */
export async function probeVideoPackets(path: string, tools: MediaTools = {}): Promise<VideoPackets | null> {
  let out: string;
  try {
    out = await runTool(
      tools.ffprobe ?? 'ffprobe',
      ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time,dts_time,duration_time,flags', '-of', 'csv=p=0', path],
      tools.probeTimeoutMs ?? 15_000,
      `probe ${path}`,
    );
  } catch (err) {
    // A file with no readable header at all (cut off before its first
    // cluster) is simply empty for our purposes; a missing ffprobe is not.
    if (err instanceof MediaToolError && /not found|did not finish/.test(err.message)) throw err;
    return null;
  }
  let first = Infinity;
  let end = -Infinity;
  let count = 0;
  let frameS = 0;
  const keyframes: number[] = [];
  for (const line of out.split('\n')) {
    const [ptsText, dtsText, durText, flags] = line.trim().split(',');
    const pts = Number(ptsText === 'N/A' || ptsText === undefined || ptsText === '' ? dtsText : ptsText);
    if (!Number.isFinite(pts)) continue;
    const dur = Number(durText);
    if (Number.isFinite(dur) && dur > 0) frameS = dur;
    count++;
    first = Math.min(first, pts);
    end = Math.max(end, pts + (Number.isFinite(dur) && dur > 0 ? dur : frameS));
    if (flags?.includes('K')) keyframes.push(pts);
  }
  if (count === 0) return null;
  keyframes.sort((a, b) => a - b);
  return { firstPtsS: first, endPtsS: end, keyframesS: keyframes, packets: count };
}

export interface FormatInfo {
  durationS: number | null;
  tags: Record<string, string>;
}

/** The container's duration and format tags. */
export async function probeFormat(path: string, tools: MediaTools = {}): Promise<FormatInfo> {
  const out = await runTool(
    tools.ffprobe ?? 'ffprobe',
    ['-v', 'error', '-show_entries', 'format=duration:format_tags', '-of', 'json', path],
    tools.probeTimeoutMs ?? 15_000,
    `probe ${path}`,
  );
  const json = JSON.parse(out) as { format?: { duration?: string; tags?: Record<string, string> } };
  const d = Number(json.format?.duration);
  return { durationS: Number.isFinite(d) ? d : null, tags: json.format?.tags ?? {} };
}
