// A TCP proxy standing in for the bus's 4G link in tests and the chaos run
// (netem does not exist on these machines). It forwards each connection to
// the target, can cut the link (every connection destroyed, new ones accepted
// and dropped at once, as a dead radio link drops them) and restore it.

import { type Server, type Socket, connect, createServer } from 'node:net';

export interface TcpProxyOptions {
  target: { host: string; port: number };
  /** Listen here (127.0.0.1); a free port when not given. */
  listenPort?: number;
}

export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  private isCut = false;
  private bytesUp = 0;
  private bytesDown = 0;
  private accepted = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly target: TcpProxyOptions['target'],
  ) {
    server.on('connection', (client) => this.onConnection(client));
  }

  static async start(opts: TcpProxyOptions): Promise<TcpProxy> {
    const server = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.listenPort ?? 0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
    });
    return new TcpProxy(server, port, opts.target);
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
    };
    client.on('data', (d: Buffer) => {
      this.bytesUp += d.length;
    });
    upstream.on('data', (d: Buffer) => {
      this.bytesDown += d.length;
    });
    // pipe() gives backpressure both ways: nothing buffers without bound.
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  }
}
