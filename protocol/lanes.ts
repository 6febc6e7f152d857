// The outbox lanes, shared by both ends: each vehicle numbers the messages of
// each lane 1, 2, 3... within an epoch (one per outbox database), dispatch
// acknowledges "everything up to N" per lane, and the bus deletes up to N.
//
// Everything a lane is lives in LANE_TABLE, one entry per lane: adding a lane
// is one entry (the compiler asks for every attribute), and nothing elsewhere
// lists lanes by name.

/** In drain order: alarms first, then evidence, then the rest. */
export const LANES = ['alarm', 'incident', 'snapshot', 'clip', 'followup', 'track', 'diag', 'ledger'] as const;
export type Lane = (typeof LANES)[number];

export interface LaneSpec {
  /** Drain tier: every due message of a lower tier goes before any of a higher one; lanes within a tier share by weight. */
  tier: 0 | 1 | 2;
  /** Never evicted or expired before dispatch confirms it (a config saying otherwise is refused). */
  protected: boolean;
  /**
   * How its writes on the bus are committed: FULL with an fsync (the LED says
   * "stored", and an engine switched off is a power cut), NORMAL without (a
   * crash loses nothing, a power cut the last seconds: right for the track,
   * batched every position.intervalS, not worth an fsync per point).
   */
  durability: 'FULL' | 'NORMAL';
  /** Share of the link against the other lanes of its tier (tiers 1 and 2). */
  weight: number;
  /** Most messages one drain round takes in a row. */
  batch: number;
  /** Messages older than this are dropped (and reported); null = kept until confirmed. */
  maxAgeS: number | null;
  /** "oldest": gives way to other lanes when the outbox is full; "never": kept until confirmed. */
  evict: 'never' | 'oldest';
  /**
   * When the outbox is full, older messages of the lanes that give way are
   * dropped to let it in; false: it is let in over the quota and drops
   * nothing (the ledger: recording an eviction must not cause another).
   */
  makesRoom: boolean;
  /** Its records are amended in place until the uplink reads them for sending (the ledger merges eviction ranges). */
  amended: boolean;
}

export const LANE_TABLE: Readonly<Record<Lane, LaneSpec>> = {
  alarm: { tier: 0, protected: true, durability: 'FULL', weight: 1, batch: 100, maxAgeS: null, evict: 'never', makesRoom: true, amended: false },
  incident: { tier: 0, protected: true, durability: 'FULL', weight: 1, batch: 100, maxAgeS: null, evict: 'never', makesRoom: true, amended: false },
  snapshot: { tier: 1, protected: true, durability: 'FULL', weight: 8, batch: 4, maxAgeS: null, evict: 'never', makesRoom: true, amended: false },
  clip: { tier: 1, protected: true, durability: 'FULL', weight: 8, batch: 4, maxAgeS: null, evict: 'never', makesRoom: true, amended: false },
  followup: { tier: 2, protected: false, durability: 'FULL', weight: 4, batch: 20, maxAgeS: null, evict: 'oldest', makesRoom: true, amended: false },
  track: { tier: 2, protected: false, durability: 'NORMAL', weight: 2, batch: 20, maxAgeS: 30 * 24 * 3600, evict: 'oldest', makesRoom: true, amended: false },
  diag: { tier: 2, protected: false, durability: 'NORMAL', weight: 1, batch: 20, maxAgeS: 7 * 24 * 3600, evict: 'oldest', makesRoom: true, amended: false },
  // What the outbox dropped and why (diag messages with event "evicted"): the account of every
  // evicted seq, so never evicted itself (it was the diag lane's, and a new record there evicted the
  // oldest, taking ranges of track with it). Few and small: a record takes the ranges of one lane until sent.
  ledger: { tier: 2, protected: true, durability: 'NORMAL', weight: 1, batch: 20, maxAgeS: null, evict: 'never', makesRoom: false, amended: true },
};

/** Lanes whose messages are never evicted or expired before dispatch confirms them. */
export const PROTECTED_LANES: readonly Lane[] = LANES.filter((l) => LANE_TABLE[l].protected);

export function isLane(s: string): s is Lane {
  return (LANES as readonly string[]).includes(s);
}
