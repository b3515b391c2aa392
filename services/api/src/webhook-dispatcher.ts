// Sends webhook deliveries: a BullMQ worker on the deliveries queue, in the API process, so that
// a slow or dead receiver costs a GPU worker nothing. Each delivery POSTs the job's view as
// `{type: "job.<event>", timestamp, data: <Job>}` (a batch's end: `batch.ended`, data: <Batch>), signed per Standard Webhooks; the body is
// fixed at the first try (retries are byte-identical, with the same webhook-id), the
// timestamp and signature are made per try. 2xx ends it; 410 Gone stops it; anything else —
// another status, a refused address, a timeout — is retried with backoff (WEBHOOK_DELIVERY_OPTIONS).
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { blockingConnection } from './redis-connections.ts';
import { signWebhook, webhookQueueName, type BatchView, type WebhookDelivery } from '@diffid/shared/contract';
import type { JobView } from './job-view.ts';
import { guardedLookup, refusedAddress, urlPort, type WebhookPolicy } from './webhook-policy.ts';

export interface DispatcherOptions {
  redis: Redis;
  prefix: string;
  queueName: string;
  key: Buffer;
  policy: WebhookPolicy;
  /** The job's public view now (null once it expired). */
  view(id: string, owner: string | null): Promise<JobView | null>;
  /** The batch's public view now (null once it expired), for its `batch.ended` event. */
  batchView(id: string, owner: string | null): Promise<BatchView | null>;
  timeoutMs?: number;
  /** Deliveries in flight at once on this process. */
  concurrency?: number;
  log?: (event: string, fields: Record<string, unknown>) => void;
}

/**
 * POSTs a body; resolves with the status once the answer has ended. Connects only where the
 * policy allows; follows no redirect. The whole exchange has `timeoutMs` — a receiver that keeps
 * trickling bytes would otherwise hold a delivery slot for ever.
 */
export function postJson(url: string, body: string, headers: Record<string, string>, policy: WebhookPolicy, timeoutMs: number): Promise<number> {
  const target = new URL(url);
  const host = target.hostname.replace(/^\[(.*)\]$/, '$1');
  // Node calls no lookup for an address written in the URL: check it here.
  const port = urlPort(target);
  const literal = isIP(host) ? refusedAddress(policy, host, host, port) : null;
  if (literal) return Promise.reject(new Error(literal));
  const send = target.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = send(
      target,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'user-agent': 'diffid-serve-webhooks', ...headers },
        lookup: guardedLookup(policy, port) as never,
      },
      (res) => {
        // The answer's body is not read: drop it without holding it.
        res.resume();
        res.on('end', () => {
          clearTimeout(deadline);
          resolve(res.statusCode ?? 0);
        });
        res.on('error', reject);
      },
    );
    const deadline = setTimeout(() => req.destroy(new Error(`no complete answer in ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (err) => {
      clearTimeout(deadline);
      reject(err);
    });
    req.end(body);
  });
}

export function startWebhookDispatcher(o: DispatcherOptions): { worker: Worker<WebhookDelivery>; close(): Promise<void> } {
  const log = o.log ?? (() => {});
  const timeoutMs = o.timeoutMs ?? 10_000;
  const worker = new Worker<WebhookDelivery>(
    webhookQueueName(o.queueName),
    async (job: Job<WebhookDelivery>) => {
      const d = job.data;
      let body = d.body;
      if (body === undefined) {
        const view = d.batch ? await o.batchView(d.job, d.owner ?? null) : await o.view(d.job, d.owner ?? null);
        if (!view) return 'expired';
        body = JSON.stringify({ type: `${d.batch ? 'batch' : 'job'}.${d.event}`, timestamp: new Date().toISOString(), data: view });
        await job.updateData({ ...d, body });
      }
      const id = `msg_${job.id as string}`;
      const timestamp = Math.floor(Date.now() / 1000);
      const headers = { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signWebhook(o.key, id, timestamp, body) };
      const status = await postJson(d.url, body, headers, o.policy, timeoutMs);
      log('webhook_sent', { id, job: d.job, event: d.event, status, attempt: job.attemptsMade + 1 });
      if (status >= 200 && status < 300) return status;
      if (status === 410) throw new UnrecoverableError(`${d.url} answered 410 Gone: no more tries`);
      throw new Error(`${d.url} answered ${status}`);
    },
    { connection: blockingConnection(o.redis), prefix: o.prefix, concurrency: o.concurrency ?? 8, autorun: true },
  );
  worker.on('failed', (job, err) => log('webhook_failed', { job: job?.data.job, event: job?.data.event, attempt: job?.attemptsMade, err: err.message }));
  worker.on('error', (err) => log('webhook_dispatcher_error', { err: err.message }));
  return {
    worker,
    async close() {
      await worker.close();
      await (worker.opts.connection as Redis).quit().catch(() => undefined);
    },
  };
}
