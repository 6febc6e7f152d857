// The outbox lanes, shared by both ends: each vehicle numbers the messages of
// each lane 1, 2, 3... within an epoch (one per outbox database), dispatch
// acknowledges "everything up to N" per lane, and the bus deletes up to N.

/** In drain order: alarms first, then evidence, then the rest. */
export const LANES = ['alarm', 'incident', 'snapshot', 'clip', 'followup', 'track', 'diag'] as const;
export type Lane = (typeof LANES)[number];

/** Lanes whose messages are never evicted or expired before dispatch confirms them. */
export const PROTECTED_LANES: readonly Lane[] = ['alarm', 'incident', 'snapshot', 'clip'];

/** Drain tiers: every due message of a lower tier goes before any of a higher one; lanes within a tier share by weight. */
export const LANE_TIER: Readonly<Record<Lane, 0 | 1 | 2>> = {
  alarm: 0,
  incident: 0,
  snapshot: 1,
  clip: 1,
  followup: 2,
  track: 2,
  diag: 2,
};

export function isLane(s: string): s is Lane {
  return (LANES as readonly string[]).includes(s);
}
