// `busguard agent --config FILE`: run until SIGTERM/SIGINT, then close the
// hardware and publish "offline" before exiting.

import { Agent } from './agent.ts';
import { ConfigError } from '../common/config-file.ts';
import { checkAgentPaths, loadAgentConfig } from './config.ts';
import { stopOnSignals } from '../common/lifecycle.ts';

export async function runAgent(configFile: string): Promise<void> {
  const config = loadAgentConfig(configFile);
  // Everything that can be checked is, before the database or a device is opened.
  const problems = checkAgentPaths(config);
  if (problems.length) throw new ConfigError(configFile, problems);
  const agent = await Agent.start(config);
  stopOnSignals(agent.log, () => agent.stop());
}
