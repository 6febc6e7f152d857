// Power cuts on the bus, on real parts: the agent runs with a library that
// loses everything it wrote under its storage folder and did not fsync, on
// command (test/helpers/powercut), as an engine switched off does. Whatever
// the bus has told dispatch it has done must survive that: an acknowledgement
// the bus reported (dispatch then stops re-sending it) must still be in its
// journal after the cut, whatever lane wrote last before it. And a bus and
// dispatch that disagree about which alarms are open (a journal that lost a
// row behind the agent's back) agree again on reconnect, so no single lost
// write can leave the panic button refusing new alarms.

import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simDouble, simLed, simPress } from '../../hal/panel/sim-client.ts';
import { powerCut } from '../helpers/powercut.ts';
import { BusFixture } from './fixture.ts';

describe('power cuts: what the bus reported to dispatch survives', () => {
  const bus = new BusFixture();
  let rig: ReturnType<typeof powerCut>;

  beforeAll(async () => {
    await bus.start({
      // Routine track every second: NORMAL (un-fsync'd) writes between the alarm and its ack.
      position: { intervalS: 1, alarmIntervalS: 1, minIntervalS: 0, minDistanceM: 0, maxGapS: 1 },
      // A camera that is not there: each alarm writes a snapshot.failed diag record (NORMAL) after it.
      cameras: [{ name: 'cabin', port: join('/nonexistent', 'ttyCAM'), timeoutMs: 200 }],
    });
    rig = powerCut(join(bus.dir, 'bus'), join(bus.dir, 'power-cut'));
    // Run the agent under the rig from here on.
    await bus.agent.kill('SIGTERM');
    await bus.startAgent(rig.env);
    await bus.agent.waitForEvent('gps.first-fix', () => true, 15_000);
  }, 90_000);
  afterAll(() => bus.stop());

  /** Raise an alarm (hold) or an incident (double), wait until dispatch has it and the bus knows, and return its id. */
  async function raiseAndDeliver(kind: 'emergency' | 'incident'): Promise<string> {
    const from = bus.agent.mark();
    if (kind === 'emergency') await simPress(bus.socket, { holdMs: 600 });
    else await simDouble(bus.socket, {});
    const stored = await bus.agent.waitForEvent('alarm.stored', (l) => l.kind === kind, 10_000, from);
    const id = stored.alarmId as string;
    await bus.agent.waitForEvent('alarm.delivered', (l) => l.alarmId === id, 15_000, from);
    return id;
  }

  /** Acknowledge at dispatch, wait until the bus has reported it has the ack, then cut the power and start the agent again (under the rig). */
  async function ackThenCut(id: string, before: () => Promise<void>): Promise<void> {
    await before();
    const dFrom = bus.dispatch.mark();
    await bus.ackAndSee(id);
    // The bus told dispatch it has the ack: dispatch will not send it again.
    await bus.dispatch.waitForEvent('ack.seen', (l) => (l.alarmIds as string[]).includes(id), 15_000, dFrom);
    rig.cut();
    const exit = await bus.agent.exited;
    expect(exit.code, `the agent should die of the power cut; stderr: ${bus.agent.stderr.slice(-500)}`).toBe(137);
    expect(bus.agent.stderr).toContain('powercut: power cut');
    rig.reset();
    await bus.startAgent(rig.env);
  }

  /** Straight after the restart, from the journal alone (before dispatch could re-send anything): the alarm is closed. */
  async function journalSaysClosed(id: string): Promise<void> {
    const started = await bus.agent.waitForEvent('agent.started');
    expect(started.openAlarms as string[], 'open alarms in the journal after the power cut').not.toContain(id);
  }

  /** The ack held: a new press of the same kind raises a new alarm, whose ack survives a cut as well. */
  async function pressAgainRaisesNew(kind: 'emergency' | 'incident', previous: string): Promise<void> {
    const next = await raiseAndDeliver(kind);
    expect(next).not.toBe(previous);
    await ackThenCut(next, async () => {});
    await journalSaysClosed(next);
  }

  it('an incident acknowledged after track writes (NORMAL) keeps its ack through a power cut', async () => {
    const id = await raiseAndDeliver('incident');
    await ackThenCut(id, async () => {
      // Track batches are being committed without fsync right up to the ack.
      const from = bus.agent.mark();
      await bus.agent.waitForEvent('position.stored', (l) => l.lane === 'track', 10_000, from);
    });
    await journalSaysClosed(id);
    await pressAgainRaisesNew('incident', id);
  }, 120_000);

  it('an emergency acknowledged after a failed snapshot (a diag write, NORMAL) keeps its ack through a power cut', async () => {
    const id = await raiseAndDeliver('emergency');
    await ackThenCut(id, async () => {
      await bus.agent.waitForEvent('snapshot.failed', (l) => l.alarmId === id, 10_000);
    });
    await journalSaysClosed(id);
    expect(await simLed(bus.socket)).not.toBe('delivered');
    await pressAgainRaisesNew('emergency', id);
  }, 120_000);

  it('a journal that lost an ack while the agent was down is reconciled with dispatch on reconnect; the next press raises a new alarm', async () => {
    const id = await raiseAndDeliver('emergency');
    await bus.ackAndSee(id);
    await bus.dispatch.waitForEvent('ack.seen', (l) => (l.alarmIds as string[]).includes(id), 15_000);
    await bus.agent.kill('SIGTERM');
    // Behind the agent's back (a restored backup, a lost write): the ack is gone from the journal.
    const db = new Database(join(bus.dir, 'bus', 'outbox.db'));
    db.prepare("UPDATE alarms SET state = 'delivered', acknowledged_at = NULL, acknowledged_by = NULL WHERE id = ?").run(id);
    db.close();
    const agent = await bus.startAgent();
    const started = await agent.waitForEvent('agent.started');
    expect(started.openAlarms).toContain(id);
    // The bus lists its open alarms as it comes online; dispatch sends the ack it has again.
    await bus.dispatch.waitForEvent('ack.lost-on-bus', (l) => (l.alarmIds as string[]).includes(id), 15_000);
    await agent.waitForEvent('alarm.acknowledged', (l) => l.alarmId === id, 15_000);
    const next = await raiseAndDeliver('emergency');
    expect(next).not.toBe(id);
    await bus.ack(next);
  }, 120_000);
});
