// Messages as a bus sends them, for the unit tests of the wire format and of
// dispatch: each call a fresh id, the fields a test cares about laid over.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { DispatchStore } from '../../dispatch/store.ts';
import type { AlarmMessage } from '../../protocol/messages.ts';

/** An emergency from city/bus-1 on route 603, held 500 ms, no fix; `over` replaces any field. */
export function anAlarm(over: Partial<AlarmMessage> = {}): AlarmMessage {
  return {
    v: 1,
    id: randomUUID(),
    kind: 'emergency',
    fleet: 'city',
    vehicle: 'bus-1',
    route: '603',
    raisedAt: new Date().toISOString(),
    timeSource: 'gps',
    heldMs: 500,
    fix: null,
    ...over,
  };
}

/** A dispatch store on a real SQLite file in its own temp folder, fresh for each test of the describe block; closed and removed after. */
export class FreshStore {
  private dir = '';
  private current: DispatchStore | undefined;

  constructor(prefix: string) {
    beforeEach(() => {
      this.dir = mkdtempSync(join(tmpdir(), prefix));
      this.current = new DispatchStore(join(this.dir, 'd.db'));
    });
    afterEach(() => {
      this.current?.close();
      rmSync(this.dir, { recursive: true, force: true });
    });
  }

  get store(): DispatchStore {
    if (!this.current) throw new Error('FreshStore: used outside a test');
    return this.current;
  }

  /** Close the store and open the same file again, as a restarted dispatch would. */
  reopen(): DispatchStore {
    this.current?.close();
    this.current = new DispatchStore(join(this.dir, 'd.db'));
    return this.current;
  }
}
