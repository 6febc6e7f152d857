// The dispatch commands: run the receiver, list a queue, acknowledge.

import { createLogger } from '../protocol/log.ts';
import type { AlarmKind } from '../protocol/messages.ts';
import { acknowledge } from './acknowledge.ts';
import { loadDispatchConfig } from './config.ts';
import { Receiver } from './receiver.ts';
import { DispatchStore, type StoredAlarm } from './store.ts';

export async function runReceiver(configFile: string): Promise<void> {
  const config = loadDispatchConfig(configFile);
  const receiver = new Receiver(config);
  receiver.start();
  receiver.log.info({ event: 'dispatch.started', db: config.storage.path }, 'dispatch receiver started');
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    receiver.log.info({ event: 'dispatch.signal', signal }, 'stopping');
    receiver.stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

export function listQueue(configFile: string, kind: AlarmKind, opts: { all?: boolean; json?: boolean }): void {
  const config = loadDispatchConfig(configFile);
  const store = new DispatchStore(config.storage.path);
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
    process.stdout.write(`${['ID', 'VEHICLE', 'ROUTE', 'RAISED (UTC)', 'POSITION', 'ACK'].join('\t')}\n`);
    for (const r of rows) process.stdout.write(`${formatRow(r)}\n`);
  } finally {
    store.close();
  }
}

function formatRow(r: StoredAlarm): string {
  const f = r.fix;
  const where = f
    ? `${f.lat.toFixed(6)},${f.lon.toFixed(6)}${f.valid ? '' : ' (invalid)'}${f.stale ? ` (stale ${f.ageS}s)` : ` (${f.ageS}s old)`}${f.speedMps !== null ? ` ${(f.speedMps * 3.6).toFixed(0)}km/h` : ''}`
    : 'no fix';
  const ack = r.ackAt ? `${r.ackBy} ${r.ackAt}${r.ackSeenAt ? ' (on bus)' : ' (not yet on bus)'}` : '-';
  return [r.id, `${r.fleet}/${r.vehicle}`, r.route ?? '-', r.raisedAt, where, ack].join('\t');
}

export async function ackCommand(configFile: string, id: string, by: string): Promise<void> {
  const config = loadDispatchConfig(configFile);
  const log = createLogger('dispatch-ack', 'warn');
  const store = new DispatchStore(config.storage.path);
  try {
    const result = await acknowledge(store, config, id, by, log);
    const a = result.alarm;
    const what = a.kind === 'emergency' ? 'alarm' : 'incident';
    if (!result.recorded) {
      process.stdout.write(`${what} ${a.id} was already acknowledged by ${a.ackBy} at ${a.ackAt}\n`);
    } else {
      process.stdout.write(`acknowledged ${what} ${a.id} (${a.fleet}/${a.vehicle}) by ${a.ackBy}\n`);
    }
    if (!result.published) {
      process.stdout.write(`not sent to the bus yet (${result.publishError}); a running "busguard dispatch" re-sends it\n`);
    }
  } finally {
    store.close();
  }
}

export async function footageCliCommand(configFile: string, vehicle: string, opts: { from: string; to: string; camera?: string; by: string; wait: number; json?: boolean }): Promise<number> {
  const config = loadDispatchConfig(configFile);
  const log = createLogger('dispatch-footage', 'warn');
  const { footageCommand } = await import('./footage.ts');
  return footageCommand(
    config,
    () => new DispatchStore(config.storage.path),
    vehicle,
    { from: opts.from, to: opts.to, camera: opts.camera ?? null, by: opts.by, waitS: opts.wait, json: opts.json === true },
    log,
    (line) => process.stdout.write(`${line}\n`),
  );
}
