// `busguard agent --config FILE`: run until SIGTERM/SIGINT, then close the
// hardware and publish "offline" before exiting.

import { Agent } from './agent.ts';
import { loadAgentConfig } from './config.ts';

export async function runAgent(configFile: string): Promise<void> {
  const config = loadAgentConfig(configFile);
  const agent = await Agent.start(config);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    agent.log.info({ event: 'agent.signal', signal }, 'stopping');
    agent.stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
