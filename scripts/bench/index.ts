// The benchmarks, by name. Each prints progress to stderr and its figures as
// one JSON object on the last line of stdout.

const BENCHES: Record<string, () => Promise<Record<string, unknown>>> = {
  'alarm-latency': async () => (await import('./alarm-latency.ts')).run(),
  'sqlite-outbox': async () => (await import('./sqlite-outbox.ts')).run(),
  'gps-parse': async () => (await import('./gps-parse.ts')).run(),
  'gps-agreement': async () => (await import('./gps-agreement.ts')).run(),
  drain: async () => (await import('./drain.ts')).run(),
  footprint: async () => (await import('./footprint.ts')).run(),
  evidence: async () => (await import('./evidence.ts')).run(),
  fleet: async () => (await import('./fleet.ts')).run(),
};

const name = process.argv[2];
if (!name || !BENCHES[name]) {
  process.stderr.write(`usage: npm run bench -- NAME\nbenchmarks: ${Object.keys(BENCHES).join(', ')}\n`);
  process.exit(2);
}
try {
  const result = await BENCHES[name]!();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`bench ${name}: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
}
