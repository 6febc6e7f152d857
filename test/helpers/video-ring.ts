// A live ring to cut from: the cabin test pattern (helpers/media.ts) recorded
// by a real gst-launch-1.0 in 1 s segments with a keyframe each, started and
// waited on until it holds some closed segments. Its errors are left to
// 'status'; the caller stops it (it is stopped here only if the wait fails).

import { VideoRecorder, type VideoRecorderOptions } from '../../hal/video/recorder.ts';
import { until } from '../../scripts/lib/until.ts';
import { SIM_VIDEO_CAMERA } from './media.ts';

export async function recordingRing(o: Omit<VideoRecorderOptions, 'source'>, closedSegments: number): Promise<VideoRecorder> {
  const rec = new VideoRecorder({ source: SIM_VIDEO_CAMERA.source, segmentS: 1, keyframeIntervalS: 1, ...o });
  rec.on('error', () => {});
  try {
    await rec.start();
    await until(() => rec.segments().filter((s) => s.state === 'closed').length >= closedSegments, 20_000, `${closedSegments} closed segments in the ring of ${o.name}`);
  } catch (err) {
    await rec.stop();
    throw err;
  }
  return rec;
}
