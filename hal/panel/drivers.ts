// The table of panel drivers, chosen by `panel.driver` in the agent config.
// Each driver module is imported only when chosen: onoff loads a native
// epoll addon and johnny-five a serial stack, neither of which a bus with a
// different panel should need to load (or to have compiled).

import type { Logger } from 'pino';
import type { PanelConfig } from './config.ts';
import type { Panel } from './types.ts';

export async function openPanel(config: PanelConfig, log?: Logger): Promise<Panel> {
  switch (config.driver) {
    case 'sim': {
      const { SimPanel } = await import('./sim.ts');
      return SimPanel.open(config, log);
    }
    case 'onoff': {
      const { OnoffPanel } = await import('./onoff.ts');
      return OnoffPanel.open(config, log);
    }
    case 'johnny-five': {
      const { JohnnyFivePanel } = await import('./johnny-five.ts');
      return JohnnyFivePanel.open(config, log);
    }
  }
}
