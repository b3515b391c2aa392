// A webhook receiver for the tests: a local HTTP server that records each delivery.
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';

export interface Received {
  headers: IncomingMessage['headers'];
  body: string;
}

export interface Receiver {
  url: string;
  port: number;
  got: Received[];
  /** The first `n` deliveries, once they have come, or those that came within `timeoutMs`. */
  next(n: number, timeoutMs?: number): Promise<Received[]>;
}

/** A receiver on 127.0.0.1 that answers with the given statuses in turn (then 200). */
export async function receiver(t: Test, statuses: number[] = []): Promise<Receiver> {
  const got: Received[] = [];
  const waiters: Array<() => void> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      got.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(statuses.shift() ?? 200).end();
      waiters.splice(0).forEach((w) => w());
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}/hooks/diffid?source=test`;
  const next = async (n: number, timeoutMs = 30_000) => {
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      waiters.splice(0).forEach((w) => w());
    }, timeoutMs);
    while (got.length < n && !late) await new Promise<void>((r) => waiters.push(r));
    clearTimeout(timer);
    return got.slice(0, n);
  };
  return { url, port, got, next };
}
