// A batch's ledger (POST /batches): the counts of its jobs by what happened to them, kept in its
// Redis record by whoever sees a job start or end — the worker that runs it, the API that cancels
// it — each in one Lua script, so that a job counts once however many processes report it, and
// exactly one of them finds that the batch has ended and announces it.
import type { Redis } from 'ioredis';
import { WEBHOOK_DELIVERY_OPTIONS, batchKeys, feedingBatchesKey, ownerBatchesKey, webhookDeliveryId, type DeliveryQueue, type JobPayload, type WebhookEvent } from '../contract/index.ts';

/** How a job ended, as a batch counts it. */
export type BatchOutcome = 'succeeded' | 'failed' | 'canceled';

const OUTCOMES: Partial<Record<WebhookEvent, BatchOutcome>> = { completed: 'succeeded', failed: 'failed', canceled: 'canceled' };

// Ends the batch when every job has ended or been dropped (local to the scripts below).
// Returns 1 when this call ended it.
const END_IF_DONE = `
local function endIfDone(record, ended, feeding, owned, id, now)
  local jobs = tonumber(redis.call('HGET', record, 'jobs') or '0')
  local done = redis.call('SCARD', ended) + tonumber(redis.call('HGET', record, 'dropped') or '0')
  if done < jobs or redis.call('HSETNX', record, 'ended_at', now) == 0 then return 0 end
  redis.call('SREM', feeding, id)
  redis.call('SREM', owned, id)
  return 1
end
`;

// KEYS: 1 record, 2 started, 3 ended, 4 feeding batches, 5 the owner's open batches
// ARGV: 1 job id, 2 'start' or the outcome, 3 now (ISO), 4 batch id
const RECORD = `${END_IF_DONE}
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == 'start' then
  if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 and redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
    redis.call('PEXPIRE', KEYS[2], math.max(1, redis.call('PTTL', KEYS[1])))
    redis.call('HINCRBY', KEYS[1], 'running', 1)
  end
  return 0
end
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[3], math.max(1, redis.call('PTTL', KEYS[1])))
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'running', -1) end
return endIfDone(KEYS[1], KEYS[3], KEYS[4], KEYS[5], ARGV[4], ARGV[3])
`;

// KEYS: 1 record, 2 ended, 3 feeding batches, 4 the owner's open batches
// ARGV: 1 now (ISO), 2 batch id
// Jobs not yet queued are dropped (counted canceled); returns 1 when that ended the batch.
const CANCEL = `${END_IF_DONE}
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'ended_at') == 1 then return 0 end
if redis.call('HSETNX', KEYS[1], 'canceled_at', ARGV[1]) == 0 then return 0 end
local left = tonumber(redis.call('HGET', KEYS[1], 'jobs')) - tonumber(redis.call('HGET', KEYS[1], 'submitted') or '0')
redis.call('HSET', KEYS[1], 'dropped', left)
redis.call('HINCRBY', KEYS[1], 'canceled', left)
-- A job chosen but not yet queued (its feeder may have died) is settled by the next feeder.
if redis.call('HEXISTS', KEYS[1], 'claiming') == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
return endIfDone(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[1])
`;

/** A batch's ledger, for the processes that see its jobs start and end. */
export interface BatchLedger {
  /**
   * Records a job's event if the job belongs to a batch; when it ends the batch, queues the
   * batch's webhook (if it asked for one). Returns whether it ended the batch.
   */
  record(payload: Pick<JobPayload, 'batch'>, jobId: string, event: WebhookEvent): Promise<boolean>;
  /** Drops the jobs not yet queued; returns whether that ended the batch (nothing was open). */
  cancel(batch: string): Promise<boolean>;
}

export function batchLedger(redis: Redis, prefix: string, webhooks: DeliveryQueue): BatchLedger {
  const ended = async (batch: string) => {
    const [owner, url] = await redis.hmget(batchKeys(prefix, batch).record, 'owner', 'webhook');
    if (!url) return;
    await webhooks.add('ended', { job: batch, batch: true, event: 'ended', url, ...(owner ? { owner } : {}) }, { ...WEBHOOK_DELIVERY_OPTIONS, jobId: webhookDeliveryId(batch, 'ended') });
  };
  const ownerOf = async (batch: string) => (await redis.hget(batchKeys(prefix, batch).record, 'owner')) || null;
  return {
    async record(payload, jobId, event) {
      const batch = payload.batch?.id;
      const outcome = event === 'start' ? 'start' : OUTCOMES[event];
      if (batch === undefined || outcome === undefined) return false;
      const k = batchKeys(prefix, batch);
      const owner = await ownerOf(batch);
      const done = (await redis.eval(RECORD, 5, k.record, k.started, k.ended, feedingBatchesKey(prefix), ownerBatchesKey(prefix, owner), jobId, outcome, new Date().toISOString(), batch)) === 1;
      if (done) await ended(batch);
      return done;
    },
    async cancel(batch) {
      const k = batchKeys(prefix, batch);
      const owner = await ownerOf(batch);
      const done = (await redis.eval(CANCEL, 4, k.record, k.ended, feedingBatchesKey(prefix), ownerBatchesKey(prefix, owner), new Date().toISOString(), batch)) === 1;
      if (done) await ended(batch);
      return done;
    },
  };
}
