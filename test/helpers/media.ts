// What a police analyst's tools read from a clip: ffprobe's format (duration,
// tags: location, comment with busguard's JSON, description).

import { execFileSync } from 'node:child_process';

export function ffprobeFormat(file: string): { durationS: number; tags: Record<string, string> } {
  const j = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_format', file]).toString()) as {
    format: { duration: string; tags?: Record<string, string> };
  };
  return { durationS: Number(j.format.duration), tags: j.format.tags ?? {} };
}

/** The cabin camera of the video tests: a live test pattern, small and quick to encode. */
export const SIM_VIDEO_CAMERA = {
  name: 'cabin',
  source: 'videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,framerate=10/1',
  segmentS: 1,
  keyframeIntervalS: 1,
  maxSegments: 60,
  bitrateKbps: 200,
};
