// An MQTT broker inside this process (aedes), enforcing the same rules as the
// shipped Mosquitto ACL (protocol/acl.ts): for the demo, which must run with
// nothing set up beyond the README. aedes speaks MQTT 3.1.1 only, without
// shared subscriptions: clients use protocolVersion 4 and dispatch no group.

import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';
import { aclAllows } from '../../protocol/acl.ts';

type Authed = { busguardUser?: string };

export class InProcessBroker {
  private server: Server | null = null;
  private broker: Aedes | null = null;
  port = 0;

  private constructor(private readonly users: Readonly<Record<string, string>>) {}

  /** Listen on a free loopback port; `users` maps each username to its password. */
  static async start(users: Readonly<Record<string, string>>): Promise<InProcessBroker> {
    const b = new InProcessBroker(users);
    await b.start();
    return b;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** (Re)start, on the same port once it has one. */
  async start(): Promise<void> {
    const users = this.users;
    const broker = await Aedes.createBroker({
      authenticate: (client, username, password, done) => {
        // As the fleet broker binds client ids to identities (use_username_as_clientid), the demo's refuses any other id.
        // A receiver's alarm connection ("dispatch/alarms") logs in with its receiver's password, as the fleet broker's config has it (protocol/acl.ts).
        const secret = username === undefined ? undefined : (users[username] ?? (username.endsWith('/alarms') ? users[username.slice(0, -'/alarms'.length)] : undefined));
        const ok = secret !== undefined && password?.toString() === secret && client.id === username;
        if (ok) (client as unknown as Authed).busguardUser = username!;
        done(null, ok);
      },
      authorizePublish: (client, packet, cb) => {
        const user = (client as unknown as Authed | null)?.busguardUser;
        cb(aclAllows(user, 'write', packet.topic, null) ? null : new Error(`not authorized: ${user} → ${packet.topic}`));
      },
      authorizeSubscribe: (client, sub, cb) => {
        const user = (client as unknown as Authed).busguardUser;
        // No shared subscriptions in aedes: receivers subscribe plainly (dispatch sharedGroup null).
        cb(null, aclAllows(user, 'read', sub.topic, null) ? sub : null);
      },
    });
    const server = createServer(broker.handle);
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as { port: number }).port;
    this.broker = broker;
    this.server = server;
  }

  async stop(): Promise<void> {
    const { broker, server } = this;
    this.broker = null;
    this.server = null;
    if (broker && server) await new Promise<void>((r) => broker.close(() => server.close(() => r())));
  }
}
