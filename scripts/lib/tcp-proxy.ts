// A TCP proxy standing in for the bus's 4G link in tests and the chaos run
// (netem does not exist on these machines). It forwards each connection to
// the target, can cut the link (every connection destroyed, new ones accepted
// and dropped at once, as a dead radio link drops them) and restore it.
// With `rateBytesPerS` the uplink (bus → broker) is paced to that rate, like
// a 4G uplink: a token bucket shared by every connection (one radio carries
// them all), the client read paused while its bytes wait, so the sender
// feels the link through TCP backpressure as it would on the air.

import { type Server, type Socket, connect, createServer } from 'node:net';
import { performance } from 'node:perf_hooks';

export interface TcpProxyOptions {
  target: { host: string; port: number };
  /** Listen here (127.0.0.1); a free port when not given. */
  listenPort?: number;
  /** Uplink (client → target) rate in bytes per second, shared by all connections; unlimited when not given. */
  rateBytesPerS?: number;
}

export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  private isCut = false;
  private bytesUp = 0;
  private bytesDown = 0;
  private accepted = 0;
  private readonly pacer: UplinkPacer | null;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly target: TcpProxyOptions['target'],
    rateBytesPerS?: number,
  ) {
    this.pacer = rateBytesPerS === undefined ? null : new UplinkPacer(rateBytesPerS);
    server.on('connection', (client) => this.onConnection(client));
  }

  static async start(opts: TcpProxyOptions): Promise<TcpProxy> {
    if (opts.rateBytesPerS !== undefined && !(opts.rateBytesPerS > 0 && Number.isFinite(opts.rateBytesPerS))) {
      throw new RangeError(`TcpProxy: rateBytesPerS ${opts.rateBytesPerS} must be a positive number of bytes per second (leave it out for no limit)`);
    }
    const server = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.listenPort ?? 0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
    });
    return new TcpProxy(server, port, opts.target, opts.rateBytesPerS);
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Drop every connection both ways; new ones are dropped until restore(). */
  cut(): void {
    this.isCut = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  restore(): void {
    this.isCut = false;
  }

  stats(): { bytesUp: number; bytesDown: number; connections: number; open: number } {
    return { bytesUp: this.bytesUp, bytesDown: this.bytesDown, connections: this.accepted, open: this.sockets.size };
  }

  async stop(): Promise<void> {
    this.cut();
    this.pacer?.stop();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(client: Socket): void {
    this.accepted++;
    if (this.isCut) {
      client.destroy();
      return;
    }
    const upstream = connect(this.target.port, this.target.host);
    this.sockets.add(client);
    this.sockets.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
      this.pacer?.drop(client);
    };
    client.on('data', (d: Buffer) => {
      this.bytesUp += d.length;
    });
    upstream.on('data', (d: Buffer) => {
      this.bytesDown += d.length;
    });
    // pipe() gives backpressure both ways: nothing buffers without bound
    // (the pacer pauses the client's reads while its bytes wait).
    if (this.pacer) {
      const pacer = this.pacer;
      client.on('data', (d: Buffer) => pacer.push(client, upstream, d));
    } else {
      client.pipe(upstream);
    }
    upstream.pipe(client);
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  }
}

/** Bytes waiting per connection before its reads pause, and where they resume. */
const HIGH_WATER = 64 * 1024;
const LOW_WATER = 16 * 1024;
/** Do not wake for fewer bytes than this (a packet's worth), unless that is all there is. */
const MIN_SLICE = 1460;

/**
 * A token bucket in front of the uplink: tokens accrue at `rate` bytes a
 * second up to a burst of 20 ms, and bytes leave in arrival order (across
 * connections) as tokens allow.
 */
class UplinkPacer {
  private readonly queue: { from: Socket; to: Socket; buf: Buffer }[] = [];
  private readonly waiting = new Map<Socket, number>();
  private readonly burst: number;
  private tokens: number;
  private at = performance.now();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly rate: number) {
    this.burst = Math.max(4096, Math.ceil(rate / 50));
    this.tokens = this.burst;
  }

  push(from: Socket, to: Socket, buf: Buffer): void {
    this.queue.push({ from, to, buf });
    const waiting = (this.waiting.get(from) ?? 0) + buf.length;
    this.waiting.set(from, waiting);
    if (waiting > HIGH_WATER) from.pause();
    this.send();
  }

  /** Forget what a connection had waiting (it is gone). */
  drop(from: Socket): void {
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i]!.from === from) this.queue.splice(i, 1);
    this.waiting.delete(from);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.queue.length = 0;
    this.waiting.clear();
  }

  private send(): void {
    if (this.timer) return;
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.rate) / 1000);
    this.at = now;
    for (let head = this.queue[0]; head; head = this.queue[0]) {
      if (this.tokens < Math.min(head.buf.length, MIN_SLICE)) break;
      const n = Math.min(head.buf.length, Math.floor(this.tokens));
      if (!head.to.destroyed) head.to.write(head.buf.subarray(0, n));
      this.tokens -= n;
      if (n === head.buf.length) this.queue.shift();
      else head.buf = head.buf.subarray(n);
      const left = (this.waiting.get(head.from) ?? n) - n;
      this.waiting.set(head.from, left);
      if (left <= LOW_WATER && head.from.isPaused() && !head.from.destroyed) head.from.resume();
    }
    const head = this.queue[0];
    if (!head) return;
    const need = Math.min(head.buf.length, MIN_SLICE) - this.tokens;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.send();
    }, Math.max(1, Math.ceil((need * 1000) / this.rate)));
  }
}
