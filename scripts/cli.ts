// `busguard`: one command for the bus, dispatch, the simulated hardware and
// the demo. Every failure ends in one clear line on stderr and a non-zero exit.

import { Command, InvalidArgumentError } from 'commander';
// Imported, not read from disk: the agent runs as a bundle in another folder, and esbuild inlines this.
import pkg from '../package.json' with { type: 'json' };
import { ConfigError } from '../common/config-file.ts';
import { registerTrustCommands } from './trust-commands.ts';

const VERSION = pkg.version;

const program = new Command()
  .name('busguard')
  .description('Panic alarm and evidence system for city buses')
  .version(VERSION, '-V, --version', 'print the version of busguard')
  .showHelpAfterError()
  // Options after a subcommand belong to it: `busguard dispatch alarms --config X` is the subcommand's --config.
  .enablePositionalOptions()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

// Output piped into `head` or a pager that quits early: stop quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

/** The rates NMEA receivers talk at (4800 is NMEA 0183's own; the rest are common in u-blox, Quectel, MediaTek...). */
const GPS_SIM_RATES = [4800, 9600, 19200, 38400, 57600, 115200] as const;

/** Levenshtein distance, for "did you mean" on a mistyped command. */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function positiveInt(name: string, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0 || n > max) throw new InvalidArgumentError(`${name} must be a whole number from 1 to ${max} (got "${value}")`);
    return n;
  };
}

/** `--wait`: seconds from 0 to `max`. */
function waitSeconds(max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0 || n > max) throw new InvalidArgumentError(`--wait must be 0 to ${max} seconds (got "${v}")`);
    return n;
  };
}

program
  .command('agent')
  .description('run the on-bus agent')
  .requiredOption('-c, --config <file>', 'agent config file (JSON)')
  .action(async (opts: { config: string }) => {
    const { runAgent } = await import('../firmware/main.ts');
    await runAgent(opts.config);
  });

const dispatch = program
  .command('dispatch')
  .description('the receiving side: run the receiver (`busguard dispatch --config FILE`), list and acknowledge alarms, ask for footage')
  .usage('[command] [options]')
  .option('-c, --config <file>', 'dispatch config file (JSON): run the receiver')
  .allowExcessArguments(true)
  .action(async (opts: { config?: string }, cmd: Command) => {
    // Not a subcommand: a typo must say so, not be taken for the receiver's arguments.
    const [word] = cmd.args;
    if (word !== undefined) {
      const names = cmd.commands.map((c) => c.name());
      const near = names.filter((n) => editDistance(n, word) <= 2);
      process.stderr.write(`busguard dispatch: unknown command '${word}'${near.length ? ` (did you mean ${near.map((n) => `'${n}'`).join(' or ')}?)` : ''}; the commands are: ${names.join(', ')}\n`);
      process.exitCode = 2;
      return;
    }
    if (opts.config === undefined) {
      cmd.outputHelp();
      return;
    }
    const { runReceiver } = await import('../dispatch/main.ts');
    await runReceiver(opts.config);
  });
dispatch
  .command('serve')
  .description('run the receiver (the same as `busguard dispatch --config FILE`)')
  .requiredOption('-c, --config <file>', 'dispatch config file (JSON)')
  .action(async (opts: { config: string }) => {
    const { runReceiver } = await import('../dispatch/main.ts');
    await runReceiver(opts.config);
  });
// The two queues, each its own command: emergencies never share a list with incidents.
for (const [name, kind, description] of [
  ['alarms', 'emergency', 'list open emergency alarms (not yet acknowledged), oldest first'],
  ['incidents', 'incident', 'list open non-emergency incidents (a separate queue), oldest first'],
] as const) {
  dispatch
    .command(name)
    .description(description)
    .requiredOption('-c, --config <file>', 'dispatch config file (JSON)')
    .option('--all', `include acknowledged ${name}`)
    .option('--json', 'one JSON object per line')
    .action(async (opts: { config: string; all?: boolean; json?: boolean }) => {
      const { listQueue } = await import('../dispatch/main.ts');
      listQueue(opts.config, kind, opts);
    });
}
dispatch
  .command('vehicles')
  .description('the vehicle table: online or not and since when, faults, last position, open alarms; an offline bus with an open emergency first')
  .requiredOption('-c, --config <file>', 'dispatch config file (JSON)')
  .option('--offline', 'only vehicles not online (offline, or registered and never seen)')
  .option('--faulty', 'only vehicles reporting faults')
  .option('--json', 'one JSON object per line, with the full health each bus last reported')
  .action(async (opts: { config: string; offline?: boolean; faulty?: boolean; json?: boolean }) => {
    const { listVehicles } = await import('../dispatch/main.ts');
    listVehicles(opts.config, opts);
  });
dispatch
  .command('retention')
  .description('delete what is past its keep time now (the receiver does it every retention.everyS); an open or held alarm\'s evidence and track are kept')
  .requiredOption('-c, --config <file>', 'dispatch config file (JSON)')
  .option('--dry-run', 'say what would be deleted, delete nothing')
  .option('--json', 'one JSON object per kind')
  .action(async (opts: { config: string; dryRun?: boolean; json?: boolean }) => {
    const { retentionCommand } = await import('../dispatch/main.ts');
    await retentionCommand(opts.config, opts);
  });
dispatch
  .command('hold')
  .description('legal hold: keep an alarm\'s evidence and track from retention (a case, a court order); --release ends it')
  .argument('<id>', 'alarm id, a unique prefix of it, or FLEET/VEHICLE/ID')
  .requiredOption('-c, --config <file>', 'dispatch config file (JSON)')
  .option('--reason <text>', 'why it is held (required to hold)')
  .option('--by <name>', 'who holds it', process.env.USER ?? 'dispatcher')
  .option('--release', 'end the hold')
  .action(async (id: string, opts: { config: string; reason?: string; by: string; release?: boolean }) => {
    const { holdCommand } = await import('../dispatch/main.ts');
    holdCommand(opts.config, id, opts);
  });
dispatch
  .command('ack')
  .description('acknowledge an alarm or incident; the bus\'s LED shows it')
  .argument('<id>', 'alarm id, or a unique prefix of it (at least 4 characters)')
  .requiredOption('-c, --config <file>', 'dispatch config file (JSON)')
  .option('--by <name>', 'who acknowledges (shown to the fleet)', process.env.USER ?? 'dispatcher')
  .option('--wait <seconds>', 'wait this long for the bus to show it (0: only record it); exit 4 if it has not', waitSeconds(3600), 10)
  .option('--as <prefix>', 'sign with your own key: PREFIX.key and PREFIX.grant (busguard pki grant); --by is then the grant\'s person')
  .action(async (id: string, opts: { config: string; by: string; wait: number; as?: string }) => {
    const { ackCommand } = await import('../dispatch/main.ts');
    await ackCommand(opts.config, id, opts.by, opts.wait, opts.as);
  });

dispatch
  .command('footage')
  .description("ask a bus for a window of video from its ring; prints the bus's answer and, when it comes, the verified clip")
  .argument('<vehicle>', 'FLEET/VEHICLE, e.g. city/bus-17')
  .requiredOption('--from <time>', 'start: ISO 8601 with a zone (2026-11-23T08:15:00Z), "now", or a span before now: "-90s", "-5m", "-1h"')
  .requiredOption('--to <time>', 'end, the same forms, or ahead of now ("+40s"): at most 600 s after --from and 120 s ahead (the bus waits for it)')
  .option('--camera <name>', 'one video camera (default: every camera of the bus)')
  .requiredOption('-c, --config <file>', 'dispatch config file (JSON)')
  .option('--by <name>', 'who asks (recorded in the clip)', process.env.USER ?? 'dispatcher')
  .option('--wait <seconds>', 'wait this long for the answer and the clip (0: only queue the request)', waitSeconds(86_400), 120)
  .option('--json', 'one JSON object per line')
  .option('--as <prefix>', 'sign with your own key: PREFIX.key and PREFIX.grant (busguard pki grant)')
  .action(async (vehicle: string, opts: { from: string; to: string; camera?: string; config: string; by: string; wait: number; json?: boolean; as?: string }) => {
    const { footageCliCommand } = await import('../dispatch/main.ts');
    process.exitCode = await footageCliCommand(opts.config, vehicle, opts);
  });

const sim = program.command('sim').description('drive the simulated hardware of a running agent');
sim
  .command('press')
  .description('play driver: press the sim panic button')
  .option('--hold <ms>', 'how long to hold it', positiveInt('--hold', 60_000), 800)
  .option('--pattern <pattern>', '"hold" (default) or "double" (two short presses: a non-emergency incident)', 'hold')
  .option('--input <input>', '"panic" (default) or "incident" (the second input, when wired)', 'panic')
  .option('-s, --socket <path>', 'the agent\'s sim control socket (panel.socket in its config)')
  .option('-c, --config <file>', 'read the socket path from this agent config')
  .action(async (opts: { hold: number; pattern: string; input: string; socket?: string; config?: string }) => {
    const { simPressCommand } = await import('./sim-commands.ts');
    process.exitCode = await simPressCommand(opts);
  });
sim
  .command('led')
  .description('read the sim status LED of a running agent')
  .option('-s, --socket <path>', 'the agent\'s sim control socket')
  .option('-c, --config <file>', 'read the socket path from this agent config')
  .action(async (opts: { socket?: string; config?: string }) => {
    const { simLedCommand } = await import('./sim-commands.ts');
    await simLedCommand(opts);
  });
sim
  .command('gps')
  .description('a simulated GPS receiver: NMEA along a bus route, written to a serial port')
  .requiredOption('-p, --port <path>', 'serial port to write to (e.g. one end of a socat pair)')
  .option('--baud <rate>', `baud rate: ${GPS_SIM_RATES.join(', ')}`, (v) => {
    const n = Number(v);
    if (!(GPS_SIM_RATES as readonly number[]).includes(n)) throw new InvalidArgumentError(`--baud must be one of ${GPS_SIM_RATES.join(', ')}, the rates GPS receivers use (got "${v}")`);
    return n;
  }, 9600)
  .option('--rate <hz>', 'fixes per second', (v) => Number(v), 1)
  .option('--no-fix', 'send sentences without a valid fix (receiver still searching)')
  .action(async (opts: { port: string; baud: number; rate: number; fix: boolean }) => {
    const { simGpsCommand } = await import('./sim-commands.ts');
    await simGpsCommand(opts);
  });

const gps = program.command('gps').description('diagnose a GPS receiver');
gps
  .command('replay')
  .description('read raw receiver logs (NMEA 0183; lines starting with # are comments) and print the fixes busguard makes of them')
  .argument('<file...>', 'receiver captures')
  .option('--json', 'one JSON object per fix: source, time (when known), lat, lon, mode, altHAE, speed, track (when known)')
  .action(async (files: string[], opts: { json?: boolean }) => {
    const { gpsReplayCommand } = await import('./gps-replay.ts');
    process.exitCode = await gpsReplayCommand(files, { json: opts.json === true });
  });

const pki = program.command('pki').description('keys and certificates: the fleet CA and each unit\'s TLS identity; dispatch\'s command-signing key');
pki
  .command('keygen')
  .description('make an Ed25519 key pair: ID.key (private, mode 0600: stays where it is made) and ID.pub (give it to every bus, trust.dispatchKeys)')
  .requiredOption('--id <id>', 'the key\'s id, as the buses\' trust.dispatchKeys and dispatch\'s signing.keyId name it (e.g. dispatch-2026)')
  .option('--out <dir>', 'where to write the two files', '.')
  .action(async (opts: { id: string; out: string }) => {
    const { KEY_ID_PATTERN } = await import('../protocol/signed-command.ts');
    if (!KEY_ID_PATTERN.test(opts.id)) {
      process.stderr.write(`busguard pki keygen: --id "${opts.id}": letters, digits, ".", "_" or "-", 1 to 64 characters\n`);
      process.exitCode = 2;
      return;
    }
    const { generateKeyFiles } = await import('../common/keys.ts');
    const files = generateKeyFiles(opts.out, opts.id);
    process.stdout.write(`private key ${files.privateKeyFile} (mode 0600; dispatch: signing.privateKeyFile, signing.keyId "${opts.id}")\npublic key  ${files.publicKeyFile} (every bus: trust.dispatchKeys [{ "id": "${opts.id}", "publicKeyFile": ... }])\n`);
  });

registerTrustCommands(program, pki);

program
  .command('demo')
  .description('a simulated bus, an in-process broker and dispatch: one alarm end to end')
  .option('--hold <ms>', 'how long the demo holds the button', positiveInt('--hold', 10_000), 800)
  .action(async (opts: { hold: number }) => {
    const { runDemo } = await import('./demo.ts');
    process.exitCode = await runDemo(opts);
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`busguard: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`busguard: ${(err as Error).message}\n`);
  process.exit(1);
}
