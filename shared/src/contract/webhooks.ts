// Webhooks: the events a job can announce, what a delivery carries, and the Standard Webhooks
// signature (https://www.standardwebhooks.com: headers webhook-id, webhook-timestamp and
// webhook-signature "v1,<base64 HMAC-SHA256 of id.timestamp.body>", the key being the base64 part
// of a "whsec_…" secret). Deliveries are BullMQ jobs on their own queue, sent by the API processes
// (services/api/src/webhook-dispatcher.ts), so a GPU worker never waits on someone's server.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { JobPayload, WebhookEvent } from './jobs.ts';

/**
 * One delivery: the job (or, with `batch`, the batch), the event, the target; `body` is fixed at
 * the first try so retries are byte-identical.
 */
export interface WebhookDelivery {
  job: string;
  owner?: string;
  /** A batch's one event: it has ended (`batch.ended`, with the batch as its data). */
  batch?: true;
  event: WebhookEvent | 'ended';
  url: string;
  body?: string;
  timestamp?: number;
}

/** The deliveries queue of a job queue. */
export const webhookQueueName = (queueName: string) => `${queueName}-webhooks`;

/** One delivery per job and event, however many processes announce it: BullMQ refuses a second job of an id. */
export const webhookDeliveryId = (jobId: string, event: WebhookEvent | 'ended') => `${jobId}-${event}`;

/** Tries and backoff of a delivery: 8 tries over about 8½ minutes (2 s doubling). */
export const WEBHOOK_DELIVERY_OPTIONS = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 2000 },
  // Kept a day after, so that a repeated announcement of the same event finds its id taken.
  removeOnComplete: { age: 86_400 },
  removeOnFail: { age: 7 * 86_400 },
} as const;

/** The delivery a job's event makes, or null when the job asked for no webhook or not this event. */
export function webhookDelivery(payload: JobPayload, jobId: string, event: WebhookEvent): WebhookDelivery | null {
  const target = payload.webhook;
  if (!target || !target.events.includes(event)) return null;
  return { job: jobId, event, url: target.url, ...(payload.owner === undefined ? {} : { owner: payload.owner }) };
}

const SECRET = /^whsec_([A-Za-z0-9+/]{4}){8,128}([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The signing key of a "whsec_<base64>" secret (at least 24 bytes), or an error saying what is wrong. */
export function webhookKey(secret: string): Buffer | { error: string } {
  if (!SECRET.test(secret)) return { error: 'a Standard Webhooks secret: "whsec_" then at least 24 random bytes in base64' };
  return Buffer.from(secret.slice('whsec_'.length), 'base64');
}

/** The webhook-signature value of a message: "v1,<base64 HMAC-SHA256 of id.timestamp.body>". */
export function signWebhook(key: Buffer, id: string, timestamp: number, body: string): string {
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

/**
 * Checks a received webhook as a receiver should: one of the space-separated v1 signatures
 * matches, and the timestamp is within `toleranceSeconds` of now.
 */
export function verifyWebhook(key: Buffer, headers: { id: string; timestamp: string; signature: string }, body: string, now = Date.now(), toleranceSeconds = 300): boolean {
  const ts = /^[0-9]{1,12}$/.test(headers.timestamp) ? Number(headers.timestamp) : NaN;
  if (!(Math.abs(now / 1000 - ts) <= toleranceSeconds)) return false;
  const want = Buffer.from(signWebhook(key, headers.id, ts, body));
  return headers.signature.split(' ').some((s) => {
    const got = Buffer.from(s);
    return got.length === want.length && timingSafeEqual(got, want);
  });
}

/** What announce needs of a BullMQ Queue (shared does not depend on BullMQ). */
export interface DeliveryQueue {
  add(name: string, data: WebhookDelivery, options: typeof WEBHOOK_DELIVERY_OPTIONS & { jobId: string }): Promise<unknown>;
}

/**
 * Queues the delivery of a job's event when the job asked for it. Every process that sees the
 * event may call this: the delivery's id makes the second call a no-op.
 */
export async function announce(queue: DeliveryQueue, payload: JobPayload, jobId: string, event: WebhookEvent): Promise<boolean> {
  const delivery = webhookDelivery(payload, jobId, event);
  if (!delivery) return false;
  await queue.add(event, delivery, { ...WEBHOOK_DELIVERY_OPTIONS, jobId: webhookDeliveryId(jobId, event) });
  return true;
}
