// Every parser and every MQTT handler of both ends, with generated hostile
// input (fast-check): what `npm run fuzz -- --seconds N` drives for N seconds
// and test/protocol/fuzz-targets.test.ts drives a few hundred times each in
// the suite. A target's check throws only when its contract is broken: a
// handler that must never throw threw, a refusal without a reason, a command
// acted on that was not signed, another vehicle's alarm changed.

import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import pino from 'pino';
import { ConfigError, parseConfig } from '../common/config-file.ts';
import { generateKeyFiles, readPrivateKey } from '../common/keys.ts';
import { DispatchConfigSchema } from '../dispatch/config.ts';
import { parseWhen } from '../dispatch/footage.ts';
import { Receiver } from '../dispatch/receiver.ts';
import { AgentConfigSchema } from '../firmware/config.ts';
import { CommandTrust } from '../gateway/command-trust.ts';
import { type DownlinkHandlers, takeDownlink } from '../gateway/downlink.ts';
import { jpegDimensions, jpegLength } from '../hal/camera/jpeg.ts';
import { encodeReply, findReply, takeCommand } from '../hal/camera/vc0706-codec.ts';
import { FixAssembler } from '../hal/gps/fix-assembler.ts';
import { isNmeaError, nmeaChecksum, parseSentence } from '../hal/gps/nmea.ts';
import { parseFileTopic } from '../protocol/file-transfer.ts';
import { encode } from '../protocol/messages.ts';
import { openCommand, signCommand, signGrant } from '../protocol/signed-command.ts';
import { EvidenceSignatureSchema, EvidenceSigner, verifyEvidence } from '../protocol/signed-evidence.ts';
import { aclAllows, identityOf } from '../protocol/acl.ts';
import * as pkiModule from '../common/pki.ts';
import { DOWNLINK_KINDS, UPLINK_KINDS, type VehicleRef, downlinkTopic, uplinkTopic } from '../protocol/topics.ts';

export interface FuzzTarget<T = unknown> {
  name: string;
  input: fc.Arbitrary<T>;
  /** Throws when the contract is broken; anything the target refuses is fine. */
  check(input: T): void;
}

const bus1: VehicleRef = { fleet: 'city', vehicle: 'bus-1' };
const bus2: VehicleRef = { fleet: 'city', vehicle: 'bus-2' };

/** Values that have broken parsers elsewhere: wrong types, edges, huge, control characters, other vehicles' ids. */
const hostile = fc.oneof(
  fc.constantFrom(null, true, 0, -1, 1e308, -0, Number.MAX_SAFE_INTEGER + 2, '', 'bus-2', 'city', '\u0000\u001b[2J', 'x'.repeat(70_000), [], {}, '2026-02-30T25:61:00Z', '1999-01-01T00:00:00Z'),
  fc.string({ maxLength: 40 }),
  fc.integer(),
  fc.double(),
  fc.uuid(),
);

/** A JSON object shaped like a message: the fields busguard's kinds use, each valid-looking or hostile. */
function messageLike(valid: Record<string, unknown>): fc.Arbitrary<Buffer> {
  const keys = Object.keys(valid);
  const mutated = fc
    .record({ drop: fc.subarray(keys, { maxLength: 2 }), set: fc.dictionary(fc.constantFrom(...keys, 'extra', '__proto__'), hostile, { maxKeys: 3 }) })
    .map(({ drop, set }) => {
      const o: Record<string, unknown> = { ...valid, ...set };
      for (const k of drop) delete o[k];
      return encode(o);
    });
  return fc.oneof(
    { weight: 6, arbitrary: mutated },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)) },
    { weight: 1, arbitrary: fc.json({ maxDepth: 3 }).map((j) => Buffer.from(j)) },
  );
}

const fix = { valid: true, lat: 34.26, lon: 108.94, altM: 400, speedMps: 8, trackDeg: 90, time: '2026-11-22T09:59:59.000Z', ageS: 0.4, stale: false, sats: 9, hdop: 0.9 };
const envelope = (lane: string) => ({ lane, epoch: '00000000000000ab', seq: 7, floor: 1 });

/** A valid-looking message of each uplink kind, from bus-1 (also the tests' valid examples). */
export function uplinkTemplate(kind: (typeof UPLINK_KINDS)[number]): Record<string, unknown> {
  const base = { v: 1, id: randomUUID(), fleet: 'city', vehicle: 'bus-1' };
  switch (kind) {
    case 'alarm':
    case 'incident':
      // A signature that is well formed and signs nothing (its certificate is no certificate): refused by the verifier, never by the alarm.
      return {
        ...envelope(kind === 'alarm' ? 'alarm' : 'incident'),
        ...base,
        kind: kind === 'alarm' ? 'emergency' : 'incident',
        route: '603',
        raisedAt: '2026-11-22T10:00:00.000Z',
        timeSource: 'gps',
        heldMs: 600,
        fix,
        signature: { alg: 'ed25519', sig: `${'A'.repeat(86)}==`, cert: `-----BEGIN CERTIFICATE-----\n${'QUJD'.repeat(40)}\n-----END CERTIFICATE-----\n` },
      };
    case 'repeat':
      return { ...envelope('alarm'), ...base, alarmId: randomUUID(), kind: 'emergency', at: '2026-11-22T10:00:05.000Z', timeSource: 'gps', heldMs: 600, count: 2, fix: null };
    case 'position':
      return { ...envelope('track'), ...base, alarmId: null, points: [{ at: '2026-11-22T10:00:00.000Z', timeSource: 'gps', fix }] };
    case 'diag':
      return { ...envelope('diag'), ...base, at: '2026-11-22T10:00:00.000Z', event: 'evicted', affectedLane: 'track', count: 3, ranges: [[1, 3]] };
    case 'footage':
      return { ...envelope('clip'), ...base, requestId: randomUUID(), at: '2026-11-22T10:00:00.000Z', cameras: [] };
    case 'receipt':
      return { v: 1, acks: [randomUUID()] };
    case 'status':
      return {
        v: 1,
        state: 'online',
        at: '2026-11-22T10:00:00.000Z',
        agent: 'busguard/0.1.0',
        openAlarms: [],
        health: {
          at: '2026-11-22T10:00:00.000Z',
          uptimeS: 120,
          gnss: { state: 'fix', satellites: 9, lastFixAgeS: 0.5 },
          devices: [{ name: 'front', kind: 'camera', state: 'fault', detail: 'no answer within 1000 ms' }],
          disk: { freeBytes: 1e9, totalBytes: 3.2e10, mediaBytes: 0, mediaQuotaBytes: 1073741824, outboxBytes: 2048, outboxQuotaBytes: 268435456 },
          outbox: { track: { depth: 3, oldestAgeS: 40 } },
          clockOffsetMs: -12,
          faults: ['camera:front'],
        },
      };
  }
}

/** Real NMEA from receivers, to mutate (with the checksum put right half of the time, so the decoders see the damage). */
const NMEA = [
  '$GPRMC,081836,A,3751.65,S,14507.36,E,000.0,360.0,130998,011.3,E*62',
  '$GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*76',
  '$GNGNS,014035.00,4332.69262,S,17235.48549,E,RR,13,0.9,25.63,11.24,,*70',
  '$GPGSA,A,3,10,07,05,02,29,04,08,13,,,,,1.72,1.03,1.38*0A',
  '$GPGLL,3751.65,S,14507.36,E,225444,A*7C',
  '$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48',
  '$GPZDA,201530.00,04,07,2002,00,00*60',
  '$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74',
];

const nmeaLine = fc.oneof(
  fc.string({ maxLength: 120 }),
  fc.record({ line: fc.constantFrom(...NMEA), at: fc.nat(80), cut: fc.nat(80), insert: fc.string({ maxLength: 12 }), fixSum: fc.boolean() }).map(({ line, at, cut, insert, fixSum }) => {
    const star = line.lastIndexOf('*');
    const body = line.slice(1, star);
    const i = at % (body.length + 1);
    const damaged = body.slice(0, i) + insert + body.slice(i + (cut % 6));
    return fixSum ? `$${damaged}*${nmeaChecksum(damaged).toString(16).toUpperCase().padStart(2, '0')}` : `$${damaged}${line.slice(star)}`;
  }),
);

export interface FuzzBed {
  targets: FuzzTarget[];
  close(): Promise<void>;
}

/** Every target, with what they need (a temp folder, dispatch's key, a receiver on a real SQLite file). */
export function fuzzTargets(): FuzzBed {
  const dir = mkdtempSync(join(tmpdir(), 'busguard-fuzz-'));
  const keys = generateKeyFiles(dir, 'fuzz-dispatch');
  const problems: string[] = [];
  const privateKey = readPrivateKey('fuzz', keys.privateKeyFile, problems)!;
  const silent = pino({ level: 'silent' });
  const receiver = new Receiver(
    DispatchConfigSchema.parse({ mqtt: { url: 'mqtt://127.0.0.1:1' }, storage: { path: join(dir, 'd.db') }, signing: { keyId: 'fuzz-dispatch', privateKeyFile: keys.privateKeyFile } }),
    silent,
  );
  // Another vehicle's open alarm, which nothing from bus-1 may change.
  const victim = { v: 1 as const, id: randomUUID(), kind: 'emergency' as const, fleet: 'city', vehicle: 'bus-2', route: '7', raisedAt: '2026-11-22T10:00:00.000Z', timeSource: 'gps' as const, heldMs: 600, fix: null };
  receiver.store.addAlarm(victim);
  const victimBefore = JSON.stringify(receiver.store.get(victim.id));
  const take = (receiver as unknown as { onMessage(topic: string, payload: Buffer): void }).onMessage.bind(receiver);
  const rejected: string[] = [];
  receiver.on('rejected', (_t, reason) => rejected.push(reason));

  const gps = new FixAssembler();
  const trusted = new Map([['fuzz-dispatch', createPublicKey(privateKey)]]);
  const trust = new CommandTrust({ self: bus1, keys: trusted, clockSkewS: 60, now: () => new Date(), log: silent });
  let acted = 0;
  const handlers: DownlinkHandlers = { receipt: () => acted++, ack: () => acted++, footage: () => acted++, file: () => {} };

  const uplink = UPLINK_KINDS.map(
    (kind): FuzzTarget<{ topic: string; payload: Buffer }> => ({
      name: `dispatch: up/${kind}`,
      input: fc.record({ topic: fc.constantFrom(uplinkTopic(bus1, kind), uplinkTopic(bus2, kind)), payload: messageLike(uplinkTemplate(kind)) }),
      check: ({ topic, payload }) => {
        take(topic, payload); // never throws: a refusal is logged and emitted
        if (JSON.stringify(receiver.store.get(victim.id)) !== victimBefore) throw new Error(`a message on ${topic} changed another vehicle's alarm`);
      },
    }),
  );

  const downlink = DOWNLINK_KINDS.map(
    (kind): FuzzTarget<{ payload: Buffer; signed: boolean }> => ({
      name: `bus: down/${kind}`,
      input: fc.oneof(
        messageLike({ v: 1, alarmId: randomUUID(), by: 'officer', at: '2026-11-22T10:00:00.000Z' }).map((payload) => ({ payload, signed: false })),
        fc.record({ to: fc.constantFrom(bus1, bus2), msg: fc.object({ maxDepth: 2 }), ttl: fc.integer({ min: -3600, max: 200_000 }) }).map(({ to, msg, ttl }) => ({
          payload: signCommand({ keyId: 'fuzz-dispatch', privateKey, by: 'fuzz' }, kind, to, msg, new Date(), ttl),
          signed: to === bus1 && ttl > 0,
        })),
      ),
      check: ({ payload, signed }) => {
        const before = acted;
        takeDownlink(bus1, trust, handlers, silent, downlinkTopic(bus1, kind), payload);
        if (acted > before && !signed) throw new Error(`down/${kind}: acted on a command not signed for this bus`);
        const opened = openCommand(payload, { kind, self: bus1, keys: trusted, now: new Date(), skewS: 60 });
        if (!opened.ok && opened.error.length === 0) throw new Error('a refusal without a reason');
      },
    }),
  );

  // A fleet CA with two units: what bus-1 signed verifies as bus-1's, nothing else ever does.
  const { initCa, makeCsr, signCsr } = pkiModule;
  const caDir = join(dir, 'ca');
  const ca = new X509Certificate(readFileSync(initCa(caDir, 'fuzz fleet CA').caCert));
  const unit = (id: string) => {
    const { key, csr } = makeCsr(join(dir, 'units'), id);
    signCsr(caDir, csr, `${csr}.crt`);
    return new EvidenceSigner(createPrivateKey(readFileSync(key)), readFileSync(`${csr}.crt`, 'utf8'));
  };
  const signers = { bus1: unit('city/bus-1'), bus2: unit('city/bus-2') };

  // A person's key under a grant of the trusted dispatch key: a command acted on only with the grant as issued.
  const person = generateKeyPairSync('ed25519');
  const grant = signGrant({ keyId: 'fuzz-dispatch', privateKey }, 'officer', person.privateKey, new Date(Date.now() + 86_400_000));

  const targets: FuzzTarget[] = [
    {
      name: 'bus: commands signed by a person under a grant',
      input: fc.record({ field: fc.constantFrom('none', ...Object.keys(grant)), value: hostile, by: fc.constantFrom('officer', 'someone') }),
      check: ({ field, value, by }: { field: string; value: unknown; by: string }) => {
        const g = field === 'none' ? grant : { ...grant, [field]: value };
        const env = JSON.parse(signCommand({ keyId: 'fuzz-dispatch', privateKey: person.privateKey, by: 'officer', grant }, 'ack', bus1, { v: 1, alarmId: randomUUID(), by: 'officer', at: new Date().toISOString() }, new Date(), 600).toString()) as Record<string, unknown>;
        const payload = encode({ ...env, by, grant: g });
        const before = acted;
        takeDownlink(bus1, trust, handlers, silent, downlinkTopic(bus1, 'ack'), payload);
        const untouched = JSON.stringify(g) === JSON.stringify(grant) && by === 'officer';
        if (acted > before && !untouched) throw new Error(`acted on a command whose grant's ${field} was ${JSON.stringify(value)} (by ${by})`);
        if (acted === before && untouched) throw new Error('refused a command its grant allows');
      },
    } as FuzzTarget,
    {
      name: 'evidence: signatures of alarm records and files',
      input: fc.record({
        text: fc.string({ maxLength: 200 }),
        signer: fc.constantFrom('bus1', 'bus2', 'forged'),
        tamper: fc.boolean(),
        raw: fc.oneof(hostile, fc.dictionary(fc.constantFrom('alg', 'sig', 'cert', 'x'), hostile, { maxKeys: 4 })),
      }),
      check: ({ text, signer, tamper, raw }: { text: string; signer: 'bus1' | 'bus2' | 'forged'; tamper: boolean; raw: unknown }) => {
        // Whatever arrives as a signature is parsed without throwing; what parses is verified without throwing.
        const parsed = EvidenceSignatureSchema.safeParse(raw);
        if (parsed.success) verifyEvidence(text, parsed.data, 'city/bus-1', ca);
        // 'forged': bus-1's key over other text, presented as this text's signature.
        const sig = signer === 'forged' ? signers.bus1.sign(`${text}.`) : signers[signer].sign(text);
        const v = verifyEvidence(tamper ? `${text}\u0000` : text, sig, 'city/bus-1', ca);
        const should = signer === 'bus1' && !tamper;
        if (v.ok !== should) throw new Error(`a ${signer} signature${tamper ? ' of other text' : ''} was judged ${v.ok ? 'good' : `bad (${v.reason})`}`);
        if (!v.ok && v.reason.length === 0) throw new Error('a refusal without a reason');
      },
    } as FuzzTarget,
    {
      name: 'broker: identities and rights',
      input: fc.record({
        user: fc.oneof(fc.constantFrom('city/bus-1', 'city/bus-2', 'dispatch', 'dispatch/rx-a', 'monitor/x', 'dispatch/a/b', ''), fc.string({ maxLength: 30 })),
        access: fc.constantFrom('read' as const, 'write' as const),
        topic: fc.oneof(
          fc.string({ maxLength: 60 }),
          fc.tuple(fc.constantFrom('', '$share/dispatch/', '$share/x/'), fc.constantFrom('busguard/v1/'), fc.constantFrom('city/', '+/', '#'), fc.constantFrom('bus-1/', 'bus-2/', '+/', ''), fc.constantFrom('up/', 'down/', ''), fc.constantFrom('alarm', '+', '#', 'file/x/init', '')).map((p) => p.join('')),
        ),
      }),
      check: ({ user, access, topic }: { user: string; access: 'read' | 'write'; topic: string }) => {
        const allowed = aclAllows(user, access, topic);
        const id = identityOf(user);
        if (!allowed) return;
        if (!id) throw new Error(`"${user}" is nobody and was allowed to ${access} ${topic}`);
        if (id.role === 'vehicle') {
          const own = `busguard/v1/${id.ref.fleet}/${id.ref.vehicle}/`;
          if (!topic.startsWith(own)) throw new Error(`${user} may ${access} ${topic}, outside its own subtree`);
          if (access === 'write' && !topic.startsWith(`${own}up/`)) throw new Error(`${user} may publish ${topic}`);
        }
        if (id.role === 'monitor' && (access === 'write' || topic.startsWith('$'))) throw new Error(`a monitor may ${access} ${topic}`);
      },
    } as FuzzTarget,
    ...(uplink as FuzzTarget[]),
    ...(downlink as FuzzTarget[]),
    {
      name: 'dispatch: evidence file topics',
      input: fc.record({
        topic: fc.oneof(
          fc.string({ maxLength: 80 }).map((s) => `busguard/v1/city/bus-1/up/file/${s}`),
          fc.tuple(fc.constantFrom('f1', 'a-b', 'x'.repeat(65)), fc.constantFrom('init', '0', '65536/ab', 'fin/10', 'fin/-1', '99999999999999999')).map(([id, rest]) => `busguard/v1/city/bus-1/up/file/${id}/${rest}`),
        ),
        payload: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
      }),
      check: ({ topic, payload }) => {
        parseFileTopic(topic);
        take(topic, payload);
      },
    } as FuzzTarget,
    {
      name: 'gps: NMEA sentences into the fix assembler',
      input: nmeaLine,
      check: (line: string) => {
        const s = parseSentence(line);
        if (isNmeaError(s)) {
          if (!s.error) throw new Error('an NMEA error without a reason');
          return;
        }
        gps.push(s);
      },
    } as FuzzTarget,
    {
      name: 'camera: VC0706 replies and JPEG frames',
      input: fc.oneof(
        fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
        fc.record({ cmd: fc.integer({ min: 0, max: 255 }), status: fc.integer({ min: 0, max: 255 }), data: fc.uint8Array({ maxLength: 20 }), noise: fc.uint8Array({ maxLength: 8 }) }).map(({ cmd, status, data, noise }) =>
          Buffer.concat([Buffer.from(noise), encodeReply(0, cmd, status, Buffer.from(data))]),
        ),
      ),
      check: (buf: Buffer) => {
        for (const cmd of [0x32, 0x34, 0x36, 0x26]) findReply(buf, 0, cmd);
        takeCommand(buf, 0);
        jpegDimensions(buf);
        try {
          jpegLength(buf);
        } catch (err) {
          // Its contract: bytes that are no JPEG are refused, saying so.
          if (!(err as Error).message.startsWith('not a JPEG')) throw err;
        }
      },
    } as FuzzTarget,
    {
      name: 'config: agent and dispatch files',
      input: fc.oneof(fc.json({ maxDepth: 4 }).map((j) => JSON.parse(j) as unknown), fc.dictionary(fc.constantFrom('vehicle', 'mqtt', 'storage', 'panel', 'trust', 'signing', 'gps', 'alarm'), hostile, { maxKeys: 6 })),
      check: (raw: unknown) => {
        for (const schema of [AgentConfigSchema, DispatchConfigSchema] as const) {
          try {
            parseConfig('fuzz.json', raw, schema);
          } catch (err) {
            if (!(err instanceof ConfigError)) throw err;
          }
        }
      },
    } as FuzzTarget,
    {
      name: 'cli: footage --from/--to',
      input: fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('now', '-1h', '+40s', '-99999999999999999999h', '2026-11-23T08:15:00Z', '2026-13-45T99:99:99Z')),
      check: (text: string) => {
        const ms = parseWhen(text);
        // A time the CLI then prints and sends: it must be one a Date can hold.
        if (ms !== null) new Date(ms).toISOString();
      },
    } as FuzzTarget,
  ];

  return {
    targets,
    close: async () => {
      await receiver.files.idle();
      receiver.store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
