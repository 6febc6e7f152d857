// serialport's Linux binding (bindings-cpp 13, unix-read.js) retries a read
// that returns 0 bytes. A tty returns 0 only after a hang-up (USB device
// unplugged, pty master closed) when opened with VMIN=1 as serialport does, so
// the retry spins on the libuv thread pool without end, at 100% CPU and with a
// growing promise chain, and the port never reports the disconnect
// (serialport/bindings-cpp#162; the fix proposed in #164 is not in the 13.0.0
// installed here). Seen here when socat died while a read was in flight.
// This binding delegates to serialport's own and replaces only the port's
// read: same EAGAIN/poller wait, but 0 bytes is a disconnect. Every serial
// device in hal/ (GPS receiver, VC0706 camera and its sim) opens through it.

import { read as fsReadCb } from 'node:fs';
import { promisify } from 'node:util';
import { SerialPort } from 'serialport';

interface UnixPortBinding {
  fd: number | null;
  readonly isOpen: boolean;
  poller?: { once(event: 'readable', cb: (err: Error | null) => void): unknown };
  read(buffer: Buffer, offset: number, length: number): Promise<{ buffer: Buffer; bytesRead: number }>;
}

const fsRead = promisify(fsReadCb);
const BASE_BINDING = SerialPort.binding as unknown as { list(): Promise<unknown[]>; open(options: unknown): Promise<UnixPortBinding> };

export const HANGUP_AWARE_BINDING = {
  list: () => BASE_BINDING.list(),
  async open(options: unknown): Promise<UnixPortBinding> {
    const port = await BASE_BINDING.open(options);
    const poller = port.poller;
    // Windows has neither fd nor poller: keep its own read.
    if (typeof port.fd !== 'number' || !poller) return port;
    port.read = async (buffer, offset, length) => {
      for (;;) {
        const fd = port.fd;
        // `canceled` tells the stream this is a close, not a disconnect.
        if (fd === null) throw Object.assign(new Error('Port is not open'), { canceled: true });
        let bytesRead: number;
        try {
          ({ bytesRead } = await fsRead(fd, buffer, offset, length, null));
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK' && code !== 'EINTR') throw err;
          if (!port.isOpen) throw Object.assign(new Error('Port is not open'), { canceled: true });
          await new Promise<void>((resolve, reject) => poller.once('readable', (e) => (e ? reject(e) : resolve())));
          continue;
        }
        if (bytesRead === 0) throw new Error('end of file: the tty hung up (device unplugged or pty closed)');
        return { buffer, bytesRead };
      }
    };
    return port;
  },
};
