// `busguard agent --config FILE`: run until SIGTERM/SIGINT, then close the
// hardware and publish "offline" before exiting.

import { Agent } from './agent.ts';
import { loadAgentConfig } from './config.ts';
import { stopOnSignals } from '../protocol/lifecycle.ts';

export async function runAgent(configFile: string): Promise<void> {
  const config = loadAgentConfig(configFile);
  const agent = await Agent.start(config);
  stopOnSignals(agent.log, () => agent.stop());
}
