// The unit's health (protocol/health.ts), measured every health.checkS and
// sent in the retained status: at once when a fault comes or goes or a
// device (or the GNSS) changes state, and at least every health.reportS for
// the figures. A bus with a dead GPS or a dead camera shows it at dispatch
// without anyone pressing the button.
//
// The rules behind each fault code:
//   gnss:closed     the receiver's port is gone or cannot be opened
//   gnss:no-data    the port is open and no valid sentence comes (or the
//                   reader is still searching for its baud rate)
//   gnss:no-fix     sentences come, and no valid fix for health.noFixFaultS
//   camera:{name}   a still camera failed its last open, check or snapshot
//   recorder:{name} a video recorder is not recording (restarting, stopped)
//   disk:low        less than health.minFreeBytes free on the storage folder
//   media:full      evidence waiting for dispatch at 90 % of media.maxBytes
//   outbox:full     the outbox at 90 % of outbox.maxBytes
// During the first health.graceS after start nothing is a fault yet: devices
// are still opening.

import { statfs } from 'node:fs/promises';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { NmeaReader } from '../hal/gps/reader.ts';
import type { VideoRecorder } from '../hal/video/recorder.ts';
import type { Outbox } from '../gateway/outbox.ts';
import { type DeviceHealth, type GnssState, type Health, HealthSchema } from '../protocol/health.ts';
import type { Lane } from '../protocol/lanes.ts';

export const HealthConfigSchema = z
  .object({
    /** Measure every this many seconds (the still cameras are asked then too: one short serial exchange each). */
    checkS: z.number().min(1).max(3_600).default(5),
    /** Send the health in the retained status at least this often, faults or not. */
    reportS: z.number().min(10).max(86_400).default(300),
    /** No valid fix for this long while the receiver talks: gnss:no-fix. */
    noFixFaultS: z.number().min(5).max(86_400).default(300),
    /** Less free space than this on the storage folder's filesystem: disk:low. */
    minFreeBytes: z.number().int().min(0).default(512 * 1024 * 1024),
    /** Nothing is a fault this long after start (devices opening). */
    graceS: z.number().min(0).max(600).default(15),
  })
  .strict();
export type HealthConfig = z.output<typeof HealthConfigSchema>;

export interface HealthSources {
  config: HealthConfig;
  storageDir: string;
  gps: () => NmeaReader | null;
  /** The still cameras, asked now (SnapshotTaker.check). */
  checkCameras: () => Promise<DeviceHealth[]>;
  recorders: () => Iterable<VideoRecorder>;
  outbox: Outbox;
  mediaBytes: () => number;
  mediaQuotaBytes: number;
  clockOffsetMs: () => number | null;
  /** A fix older than this (position.staleAfterS) is no fix now. */
  fixStaleS: number;
  /** The corrected time, ISO. */
  now: () => string;
  /** Send this health in the retained status now. */
  publish: (h: Health) => void;
  log: Logger;
}

const RECORDER_STATE: Record<VideoRecorder['status']['state'], DeviceHealth['state']> = {
  recording: 'ok',
  starting: 'starting',
  idle: 'starting',
  restarting: 'fault',
  stopping: 'fault',
  stopped: 'fault',
};

export class HealthMonitor {
  private latest: Health | null = null;
  private timer: NodeJS.Timeout | null = null;
  private soon: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private lastPublishedMs = 0;
  private lastFaults = '';
  private lastStates = '';
  private readonly startedMono = performance.now();
  private stopped = false;

  constructor(private readonly s: HealthSources) {}

  /** The last measurement (sent with every "online" status). */
  current(): Health | null {
    return this.latest;
  }

  start(): void {
    this.timer = setInterval(() => this.run(), this.s.config.checkS * 1000);
    this.timer.unref();
    this.run();
  }

  /** Something changed (the GPS went silent, a recorder restarts): measure within half a second. */
  poke(): void {
    if (this.soon || this.stopped) return;
    this.soon = setTimeout(() => {
      this.soon = null;
      this.run();
    }, 500);
    this.soon.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.soon) clearTimeout(this.soon);
    await this.running;
  }

  /** One measurement at a time; a failure to measure is logged, never thrown. */
  private run(): void {
    if (this.running || this.stopped) return;
    this.running = this.measure()
      .then((h) => this.offer(h))
      .catch((err: Error) => this.s.log.warn({ event: 'health.failed', err: err.message }, 'could not measure the unit\'s health'))
      .finally(() => {
        this.running = null;
      });
  }

  private offer(h: Health): void {
    if (this.stopped) return;
    this.latest = h;
    const faults = h.faults.join(' ');
    // What is worth a status at once: a fault, or a device or the GNSS changing state (not the figures).
    const states = [h.gnss.state, ...h.devices.map((d) => `${d.name}=${d.state}`)].join(' ');
    const changed = faults !== this.lastFaults || states !== this.lastStates;
    if (faults !== this.lastFaults) {
      const came = h.faults.filter((f) => !this.lastFaults.split(' ').includes(f));
      const went = this.lastFaults.split(' ').filter((f) => f && !h.faults.includes(f));
      this.s.log[came.length ? 'warn' : 'info']({ event: 'health.faults', faults: h.faults, came, went }, h.faults.length ? `faults: ${h.faults.join(', ')}` : 'no faults');
    }
    if (changed || Date.now() - this.lastPublishedMs >= this.s.config.reportS * 1000) {
      this.lastFaults = faults;
      this.lastStates = states;
      this.lastPublishedMs = Date.now();
      this.s.publish(h);
    }
  }

  async measure(): Promise<Health> {
    const { s } = this;
    const uptimeS = Math.floor((performance.now() - this.startedMono) / 1000);
    const grace = uptimeS < s.config.graceS;
    const faults: string[] = [];
    const fault = (code: string) => {
      if (!grace) faults.push(code);
    };

    const gnss = this.gnss(uptimeS);
    if (gnss.fault) fault(gnss.fault);

    const devices = [...(await s.checkCameras())];
    for (const rec of s.recorders()) {
      const st = rec.status;
      devices.push({ name: rec.name, kind: 'recorder', state: RECORDER_STATE[st.state], detail: st.detail.slice(0, 300) });
    }
    for (const d of devices) if (d.state === 'fault') fault(`${d.kind}:${d.name}`);

    const fsInfo = await statfs(s.storageDir);
    const freeBytes = Number(fsInfo.bavail) * Number(fsInfo.bsize);
    const totalBytes = Number(fsInfo.blocks) * Number(fsInfo.bsize);
    if (freeBytes < s.config.minFreeBytes) fault('disk:low');
    const mediaBytes = s.mediaBytes();
    if (mediaBytes >= 0.9 * s.mediaQuotaBytes) fault('media:full');
    const outboxBytes = s.outbox.bytes();
    if (outboxBytes >= 0.9 * s.outbox.config.maxBytes) fault('outbox:full');

    const now = Date.now();
    const outbox: Health['outbox'] = {};
    for (const l of s.outbox.laneSummary()) outbox[l.lane as Lane] = { depth: l.depth, oldestAgeS: Math.max(0, Math.round((now - l.oldestMs) / 1000)) };
    const offset = s.clockOffsetMs();

    return HealthSchema.parse({
      at: s.now(),
      uptimeS,
      gnss: { state: gnss.state, satellites: gnss.satellites, lastFixAgeS: gnss.lastFixAgeS },
      devices: devices.slice(0, 16),
      disk: { freeBytes, totalBytes, mediaBytes, mediaQuotaBytes: s.mediaQuotaBytes, outboxBytes, outboxQuotaBytes: s.outbox.config.maxBytes },
      outbox,
      clockOffsetMs: offset === null ? null : Math.round(offset),
      faults: faults.slice(0, 40),
    });
  }

  private gnss(uptimeS: number): { state: GnssState; satellites: number | null; lastFixAgeS: number | null; fault: string | null } {
    const gps = this.s.gps();
    if (!gps) return { state: 'none', satellites: null, lastFixAgeS: null, fault: null };
    const latest = gps.latest();
    const valid = latest?.valid ? latest : null;
    const lastFixAgeS = valid ? Math.max(0, Math.round((performance.now() - valid.receivedAtMs) / 100) / 10) : null;
    const satellites = latest?.sats ?? null;
    const st = gps.readerState;
    if (st === 'closed' || st === null) return { state: 'closed', satellites, lastFixAgeS, fault: 'gnss:closed' };
    if (st === 'no-data' || st === 'probing') return { state: st, satellites, lastFixAgeS, fault: 'gnss:no-data' };
    const noFixFor = lastFixAgeS ?? uptimeS;
    const fix = lastFixAgeS !== null && lastFixAgeS <= this.s.fixStaleS;
    return { state: fix ? 'fix' : 'no-fix', satellites, lastFixAgeS, fault: !fix && noFixFor > this.s.config.noFixFaultS ? 'gnss:no-fix' : null };
  }
}
