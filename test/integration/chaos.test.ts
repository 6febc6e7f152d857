// A short run of `npm run chaos`: the same faults (agent SIGKILLs mid-commit,
// broker restarts, link cuts, dispatch SIGKILLs, a full disk when root may
// mount a tmpfs), fewer cycles. Nothing the bus created may be lost or
// doubled at dispatch (alarms, incidents, snapshots), every SQLite file passes integrity_check, and every
// track message is either at dispatch or recorded as evicted.

import { describe, expect, it } from 'vitest';
import { runChaos } from '../../scripts/chaos.ts';

describe('chaos (short run)', () => {
  it('loses and doubles nothing through kills, restarts, cuts and a full disk', async () => {
    const lines: string[] = [];
    const s = await runChaos({ cycles: 12, seed: 4242, say: (l) => lines.push(l) });
    const report = `${JSON.stringify(s)}\n${lines.join('\n')}`;
    expect(s.alarms_created + s.incidents_created, report).toBeGreaterThan(0);
    expect(s.lost, report).toBe(0);
    expect(s.duplicates, report).toBe(0);
    expect(s.integrity_failures, report).toBe(0);
    expect(s.alarms_at_dispatch, report).toBe(s.alarms_created);
    expect(s.incidents_at_dispatch, report).toBe(s.incidents_created);
    expect(s.track_unaccounted, report).toBe(0);
    expect(s.track_missing, report).toEqual([]);
    expect(s.track_messages_created, report).toBeGreaterThan(0);
    // Every snapshot the bus queued is at dispatch, verified.
    expect(s.evidence_created, report).toBeGreaterThan(0);
    expect(s.evidence_lost, report).toBe(0);
    expect(s.evidence_at_dispatch, report).toBe(s.evidence_created);
  }, 300_000);
});
