// The agent config's `cameras` key alone, parsed the way the agent parses its
// file (common/config-file.ts): what a technician's mistake comes back as.

import { z } from 'zod';
import { ConfigError, parseConfig } from '../../common/config-file.ts';
import { CamerasConfigSchema } from '../../firmware/snapshots.ts';

export const AgentCameras = z.object({ cameras: CamerasConfigSchema }).strict();

/** The cameras as the agent takes them from agent.json. */
export function parseCameras(cameras: unknown): z.infer<typeof CamerasConfigSchema> {
  return parseConfig('agent.json', { cameras }, AgentCameras).cameras;
}

/** The problems the agent prints for these cameras; throws if it would accept them. */
export function cameraConfigProblems(cameras: unknown): string[] {
  try {
    parseCameras(cameras);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error(`the config was accepted: ${JSON.stringify(cameras)}`);
}
