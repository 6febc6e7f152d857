// A unit's health, as it reports it in its retained status (and again when
// a fault comes or goes): what a fleet technician asks first when a bus
// "does not work", and what JT/T 808 terminals carry as fault bits in every
// position report. Dispatch keeps the latest per vehicle (its vehicle table,
// `busguard dispatch vehicles`).
//
// `faults` is the short answer: one code per thing that is wrong now, made on
// the bus by firmware/health.ts with the rules stated there; the rest are the
// figures behind it. Codes: gnss:closed, gnss:no-data, gnss:no-fix,
// camera:{name}, recorder:{name}, disk:low, media:full, outbox:full.

import { z } from 'zod';
import { LANES } from './lanes.ts';

const isoTime = z.iso.datetime({ offset: true });
const count = z.number().int().min(0);

export const GNSS_STATES = ['fix', 'no-fix', 'no-data', 'closed', 'probing', 'none'] as const;
export type GnssState = (typeof GNSS_STATES)[number];

export const DeviceHealthSchema = z.object({
  /** The camera's name in the agent config. */
  name: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/),
  /** A still camera (cameras[]) or a video recorder (video.cameras[]). */
  kind: z.enum(['camera', 'recorder']),
  /** 'starting': not yet known (just opened); 'fault': it failed its last check. */
  state: z.enum(['ok', 'starting', 'fault']),
  /** What the last check found, in one sentence. */
  detail: z.string().max(300),
});
export type DeviceHealth = z.infer<typeof DeviceHealthSchema>;

export const FAULT_PATTERN = /^[a-z]+(:[A-Za-z0-9_-]{1,48})?$/;

export const HealthSchema = z.object({
  /** When it was measured (the unit's clock, as corrected to GPS time when it can be). */
  at: isoTime,
  /** Seconds since the agent started. */
  uptimeS: count,
  gnss: z.object({
    /** 'none': no receiver configured; 'no-data': open but silent; 'closed': the port is gone. */
    state: z.enum(GNSS_STATES),
    /** Satellites used in the last fix. */
    satellites: count.max(255).nullable(),
    /** Seconds since the last valid fix, null before the first. */
    lastFixAgeS: z.number().min(0).nullable(),
  }),
  devices: z.array(DeviceHealthSchema).max(16),
  disk: z.object({
    /** Free bytes on the storage folder's filesystem, and its size. */
    freeBytes: count,
    totalBytes: count,
    /** Evidence waiting for dispatch, and its quota (media.maxBytes). */
    mediaBytes: count,
    mediaQuotaBytes: count,
    /** The outbox's bytes, and its quota (outbox.maxBytes). */
    outboxBytes: count,
    outboxQuotaBytes: count,
  }),
  /** Lanes with messages waiting: how many, and how old the oldest is. */
  outbox: z.partialRecord(z.enum(LANES), z.object({ depth: count, oldestAgeS: z.number().min(0) })),
  /** GPS time minus the unit's system clock, ms; null before the first timed fix. */
  clockOffsetMs: z.number().nullable(),
  faults: z.array(z.string().regex(FAULT_PATTERN)).max(40),
});
export type Health = z.infer<typeof HealthSchema>;
