// The dispatch commands: run the receiver, list a queue, acknowledge.

import { existsSync } from 'node:fs';
import { ConfigError } from '../common/config-file.ts';
import { stopOnSignals } from '../common/lifecycle.ts';
import { createLogger } from '../common/log.ts';
import type { AlarmKind } from '../protocol/messages.ts';
import { ackSeen, acknowledge } from './acknowledge.ts';
import { PersonSigner } from './person-signer.ts';
import { checkDispatchPaths, loadDispatchConfig } from './config.ts';
import { Receiver } from './receiver.ts';
import { DuplicateReceiverError } from './receivers.ts';
import type { DispatchConfig } from './config.ts';
import { printable } from './printable.ts';
import { DispatchStore, type StoredAlarm } from './store.ts';
import { Retention } from './retention.ts';
import { writeTx } from '../common/sqlite.ts';

/**
 * The store a receiver wrote, for the commands that read or act on it. A
 * mistyped storage.path must not look like a quiet night: no database there
 * is a config error naming the key (exit 2), and nothing is created.
 */
export function openExistingStore(configFile: string, config: DispatchConfig): DispatchStore {
  const path = config.storage.path;
  if (!existsSync(path)) {
    throw new ConfigError(configFile, [
      `key "storage.path" = ${JSON.stringify(path)}: no dispatch database there; check the path (a receiver, "busguard dispatch --config ${configFile}", creates it when it first runs)`,
    ]);
  }
  return new DispatchStore(path, { mustExist: true });
}

export async function runReceiver(configFile: string): Promise<void> {
  const config = loadDispatchConfig(configFile);
  const problems = checkDispatchPaths(config);
  if (problems.length) throw new ConfigError(configFile, problems);
  const receiver = new Receiver(config);
  try {
    receiver.start();
  } catch (err) {
    receiver.store.close();
    if (!(err instanceof DuplicateReceiverError)) throw err;
    receiver.log.fatal({ event: 'dispatch.identity-in-use', err: err.message }, err.message);
    process.stderr.write(`busguard dispatch: ${err.message}\n`);
    process.exitCode = 3;
    return;
  }
  // Its session taken over by another receiver with its identity: stop (exit 3), never take it back.
  receiver.once('fatal', () => void receiver.stop().finally(() => process.exit(3)));
  receiver.log.info({ event: 'dispatch.started', db: config.storage.path }, 'dispatch receiver started');
  stopOnSignals(receiver.log, () => receiver.stop());
}

export function listQueue(configFile: string, kind: AlarmKind, opts: { all?: boolean; json?: boolean }): void {
  const config = loadDispatchConfig(configFile);
  const store = openExistingStore(configFile, config);
  try {
    const rows = opts.all ? store.all(kind) : store.openQueue(kind);
    if (opts.json) {
      for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
      return;
    }
    const label = kind === 'emergency' ? 'emergency alarms' : 'incidents';
    if (rows.length === 0) {
      process.stdout.write(`no ${opts.all ? '' : 'open '}${label}\n`);
      return;
    }
    process.stdout.write(`${rows.length} ${opts.all ? '' : 'open '}${label}\n`);
    process.stdout.write(`${['ID', 'VEHICLE', 'ROUTE', 'RAISED (UTC)', 'PRESSES', 'POSITION', 'ACK'].join('\t')}\n`);
    for (const r of rows) process.stdout.write(`${formatRow(r)}\n`);
  } finally {
    store.close();
  }
}

/** `busguard dispatch retention`: one pass now (or, --dry-run, what it would delete). */
export async function retentionCommand(configFile: string, opts: { dryRun?: boolean; json?: boolean }): Promise<void> {
  const config = loadDispatchConfig(configFile);
  const store = openExistingStore(configFile, config);
  try {
    const log = createLogger('dispatch-retention', config.log.level, {}, { stderr: true });
    const result = await new Retention(store.db, config.retention, log).run({ dryRun: opts.dryRun });
    if (opts.json) {
      for (const r of result) process.stdout.write(`${JSON.stringify({ ...r, dryRun: opts.dryRun === true })}\n`);
      return;
    }
    const kept = (['track', 'diags', 'footage', 'evidence'] as const).filter((k) => !result.some((r) => r.kind === k));
    for (const r of result) {
      const span = r.count ? ` (${r.oldest} to ${r.newest})` : '';
      process.stdout.write(`${r.kind}: ${opts.dryRun ? 'would delete' : 'deleted'} ${r.count}, ${r.bytes} bytes${span}; older than ${r.cutoff}\n`);
    }
    for (const k of kept) process.stdout.write(`${k}: kept for ever (retention.${k}Days is null)\n`);
  } finally {
    store.close();
  }
}

/** `busguard dispatch hold ID` / `--release`: keep (or stop keeping) everything of one alarm from retention. */
export function holdCommand(configFile: string, id: string, opts: { reason?: string; by: string; release?: boolean }): void {
  const config = loadDispatchConfig(configFile);
  const store = openExistingStore(configFile, config);
  try {
    const a = store.find(id);
    const ref = `${a.fleet}/${a.vehicle}/${a.id}`;
    if (opts.release) {
      const n = writeTx(store.db, 'FULL', () => store.db.prepare('DELETE FROM alarm_holds WHERE fleet = ? AND vehicle = ? AND alarm_id = ?').run(a.fleet, a.vehicle, a.id).changes);
      process.stdout.write(n ? `hold on ${ref} released: retention applies to it again\n` : `${ref} was not held\n`);
      return;
    }
    if (!opts.reason) throw new ConfigError(configFile, ['--reason: say why it is held (a case number, a court order)']);
    writeTx(store.db, 'FULL', () =>
      store.db
        .prepare('INSERT INTO alarm_holds (fleet, vehicle, alarm_id, reason, held_by, held_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (fleet, vehicle, alarm_id) DO UPDATE SET reason = excluded.reason, held_by = excluded.held_by, held_at = excluded.held_at')
        .run(a.fleet, a.vehicle, a.id, opts.reason, opts.by, new Date().toISOString()),
    );
    process.stdout.write(`${ref} held (${opts.reason}): its evidence and track are kept until the hold is released\n`);
  } finally {
    store.close();
  }
}

/** `busguard dispatch vehicles`: the vehicle table, most urgent first (dispatch/vehicles.ts). */
export function listVehicles(configFile: string, opts: { json?: boolean; offline?: boolean; faulty?: boolean }): void {
  const config = loadDispatchConfig(configFile);
  const store = openExistingStore(configFile, config);
  try {
    const rows = store.vehicles.list(opts);
    if (opts.json) {
      for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
      return;
    }
    const which = [opts.offline ? 'offline' : '', opts.faulty ? 'faulty' : ''].filter(Boolean).join(' and ');
    if (rows.length === 0) {
      process.stdout.write(`no ${which ? `${which} ` : ''}vehicles\n`);
      return;
    }
    const offline = rows.filter((r) => r.state !== 'online').length;
    const faulty = rows.filter((r) => r.faults.length > 0).length;
    process.stdout.write(`${rows.length} ${which ? `${which} ` : ''}vehicle(s): ${offline} not online, ${faulty} with faults\n`);
    process.stdout.write(`${['VEHICLE', 'STATE', 'SINCE', 'FAULTS', 'LAST POSITION', 'OPEN', 'AGENT'].join('\t')}\n`);
    for (const r of rows) {
      const where = r.lastFix ? `${r.lastFix.lat.toFixed(5)},${r.lastFix.lon.toFixed(5)} at ${r.lastFixAt}` : '-';
      const open = r.attention ?? (r.openIncidents ? `${r.openIncidents} incident(s)` : '-');
      // Fault codes and the agent string are the bus's word: escaped like every other.
      const faults = r.faults.length ? printable(r.faults.join(',')) : '-';
      process.stdout.write(`${[`${r.fleet}/${r.vehicle}`, r.state, r.since ?? '-', faults, where, open, r.agent === null ? '-' : printable(r.agent)].join('\t')}\n`);
    }
  } finally {
    store.close();
  }
}

function formatRow(r: StoredAlarm): string {
  const f = r.fix;
  const where = f
    ? `${f.lat.toFixed(6)},${f.lon.toFixed(6)}${f.valid ? '' : ' (invalid)'}${f.stale ? ` (stale ${f.ageS}s)` : ` (${f.ageS}s old)`}${f.speedMps !== null ? ` ${(f.speedMps * 3.6).toFixed(0)}km/h` : ''}`
    : 'no fix';
  const ack = r.ackAt ? `${printable(r.ackBy ?? '')} ${r.ackAt}${r.ackSeenAt ? ' (on bus)' : ' (not yet on bus)'}` : '-';
  // Pressed again while open: may be an escalation, so it is in plain sight.
  const presses = r.repeats > 0 ? `${r.repeats + 1} (last ${r.lastRepeatAt})` : '1';
  // The route is the bus's word: escaped (a hostile one could hold terminal control sequences).
  return [r.id, `${r.fleet}/${r.vehicle}`, r.route === null ? '-' : printable(r.route), r.raisedAt, presses, where, ack].join('\t');
}

export async function ackCommand(configFile: string, id: string, by: string, waitS = 10, as?: string): Promise<void> {
  const config = loadDispatchConfig(configFile);
  // A command's logs go to stderr: stdout is what it says to the dispatcher.
  const store = openExistingStore(configFile, config);
  try {
    let person: PersonSigner | undefined;
    if (as !== undefined) {
      try {
        person = PersonSigner.load(as);
      } catch (err) {
        process.stderr.write(`busguard dispatch ack: --as ${as}: ${(err as Error).message}\n`);
        process.exitCode = 2;
        return;
      }
    }
    const result = acknowledge(store, config, id, by, person);
    const a = result.alarm;
    const what = a.kind === 'emergency' ? 'alarm' : 'incident';
    if (!result.recorded) {
      process.stdout.write(`${what} ${a.id} was already acknowledged by ${a.ackBy} at ${a.ackAt}\n`);
    } else {
      process.stdout.write(`acknowledged ${what} ${a.id} (${a.fleet}/${a.vehicle}) by ${a.ackBy}\n`);
    }
    const seen = await ackSeen(store, a, waitS * 1000);
    if (seen) process.stdout.write(`the bus showed it at ${seen}\n`);
    else if (waitS > 0) {
      process.stderr.write(`busguard dispatch ack: the bus has not confirmed it within ${waitS} s; it is recorded, and the running "busguard dispatch" keeps sending it until the bus does\n`);
      process.exitCode = 4;
    }
  } finally {
    store.close();
  }
}

export async function footageCliCommand(configFile: string, vehicle: string, opts: { from: string; to: string; camera?: string; by: string; wait: number; json?: boolean; as?: string }): Promise<number> {
  const config = loadDispatchConfig(configFile);
  let person: PersonSigner | undefined;
  try {
    if (opts.as !== undefined) person = PersonSigner.load(opts.as);
  } catch (err) {
    process.stderr.write(`busguard dispatch footage: --as ${opts.as}: ${(err as Error).message}\n`);
    return 2;
  }
  const log = createLogger('dispatch-footage', 'error', {}, { stderr: true });
  const { footageCommand } = await import('./footage.ts');
  openExistingStore(configFile, config).close();
  return footageCommand(
    config,
    () => new DispatchStore(config.storage.path, { mustExist: true }),
    vehicle,
    { from: opts.from, to: opts.to, camera: opts.camera ?? null, by: person?.person ?? opts.by, waitS: opts.wait, json: opts.json === true, ...(person ? { person } : {}) },
    log,
    (line) => process.stdout.write(`${line}\n`),
  );
}
