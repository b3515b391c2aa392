// Jobs as the API sees them: submit (images to Redis under their own keys, the job to BullMQ),
// read back a public view (job-view.ts), cancel, fetch result PNGs, and watch (job-watch.ts).

import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { DEFAULT_SETTINGS } from '@diffid/shared/settings';
import {
  DiffIdError,
  JOB_PRIORITY,
  inputNames,
  bundleInfoKey,
  cancelChannel,
  jobKeys,
  ownerOpenJobsKey,
  plannedCost,
  plannedImages,
  announce,
  webhookQueueName,
  type DeliveryQueue,
  type WebhookDelivery,
  type WebhookTarget,
  type AnimationFormat,
  type BundleInfo,
  type InputName,
  type JobKind,
  type JobPayload,
  type JobResult,
  type ParamsOf,
} from '@diffid/shared/contract';
import { canceledView, isTerminal, jobView, type JobView } from './job-view.ts';
import { createJobWatcher, type JobWatcher } from './job-watch.ts';

export interface JobServiceOptions {
  redis: Redis;
  prefix: string;
  queueName: string;
  /** How long uploads wait for a worker; long, so that accepted work is not lost in a backlog. */
  inputTtlSeconds: number;
  /** How long results and finished jobs are kept. */
  resultTtlSeconds: number;
  attempts: number;
  /** Admission limits; none when left out (tests of other things). */
  limits?: AdmissionLimits;
}

/** What a key, and the deployment, may have waiting at once. */
export interface AdmissionLimits {
  maxJobsPerKey: number;
  maxQueuedStepsPerKey: number;
  maxQueueDepth: number;
}

/**
 * Whose request it is: a tenant's name, or null when the API runs without keys. Jobs of another
 * owner are answered as unknown.
 */
export type Owner = string | null;

/** A job's uploaded files, by the names its form takes them under (several for a repeated field). */
export type InputFiles = Partial<Record<InputName, Buffer[]>>;

export interface JobService extends Pick<JobWatcher, 'watch' | 'waitFor'> {
  /** Queues a job; `webhook`, when given, was checked by the caller (webhook-policy.ts). */
  submit<K extends JobKind>(kind: K, params: ParamsOf[K], files: InputFiles, owner: Owner, webhook?: WebhookTarget): Promise<string>;
  view(id: string, owner: Owner): Promise<JobView | null>;
  cancel(id: string, owner: Owner): Promise<JobView>;
  image(id: string, index: number, owner: Owner): Promise<Buffer | null>;
  /** A succeeded morph's animation in one format (null when it has none). */
  animation(id: string, format: AnimationFormat, owner: Owner): Promise<Buffer | null>;
  /** What the workers' bundle says about itself (null before any worker started). */
  bundleInfo(): Promise<BundleInfo | null>;
  /** Jobs in the queue by BullMQ state. */
  counts(): Promise<Record<string, number>>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Wraps Redis failures as the 503 the catalogue promises. */
async function redisCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof DiffIdError) throw err;
    throw new DiffIdError('QUEUE_UNAVAILABLE', `Redis did not answer: ${(err as Error).message}`, { cause: err });
  }
}

export function createJobService(options: JobServiceOptions): JobService {
  const { redis, prefix, queueName } = options;
  const queue = new Queue<JobPayload, JobResult>(queueName, { connection: redis, prefix });
  const webhooks = new Queue<WebhookDelivery>(webhookQueueName(queueName), { connection: redis, prefix });
  let bundleCache: { at: number; info: BundleInfo | null } | null = null;

  const bundleInfo = async (): Promise<BundleInfo | null> => {
    const now = Date.now();
    if (bundleCache && now - bundleCache.at < 5000) return bundleCache.info;
    const raw = await redisCall(() => redis.get(bundleInfoKey(prefix)));
    const info = raw ? (JSON.parse(raw) as BundleInfo) : null;
    bundleCache = { at: now, info };
    return info;
  };

  /** The job's view, payload and owner; null when there is no such job. */
  const read = async (id: string): Promise<{ view: JobView; payload: JobPayload | null; owner: Owner } | null> => {
    if (!UUID.test(id)) return null;
    return redisCall(async () => {
      const tombstone = await redis.get(jobKeys(prefix, id).canceled);
      if (tombstone) {
        const t = JSON.parse(tombstone) as { owner: Owner; view: JobView };
        return { view: t.view, payload: null, owner: t.owner };
      }
      // State first, then the job: a job read after its state can only be further along, so a
      // succeeded state always comes with its result.
      const state = await queue.getJobState(id);
      const job = await queue.getJob(id);
      if (!job) return null;
      const maxBatch = (await bundleInfo())?.max_batch ?? DEFAULT_SETTINGS.maxBatch;
      const snapshot = {
        id,
        state,
        data: job.data,
        progress: job.progress,
        timestamp: job.timestamp,
        processedOn: job.processedOn,
        finishedOn: job.finishedOn,
        failedReason: job.failedReason,
        returnvalue: job.returnvalue,
      };
      const view = jobView(snapshot, maxBatch);
      return view ? { view, payload: job.data, owner: job.data.owner ?? null } : null;
    });
  };
  /** The job if `owner` may see it: another owner's job is no job at all. */
  const readOwn = async (id: string, owner: Owner) => {
    const found = await read(id);
    return found && found.owner === owner ? found : null;
  };

  const view = async (id: string, owner: Owner) => (await readOwn(id, owner))?.view ?? null;
  // The watcher serves jobs whose owner a route has already checked.
  const watcher = createJobWatcher({ redis, prefix, queueName, view: async (id) => (await read(id))?.view ?? null });

  /**
   * Refuses a job the queue or its owner cannot take now. The owner's open jobs are kept in a
   * sorted set with their costs; finished ones are pruned here, so the set stays as small as
   * the limit.
   */
  const admit = async (owner: Owner, cost: number) => {
    const limits = options.limits;
    if (!limits) return;
    const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children');
    const depth = Object.values(counts).reduce((a, b) => a + b, 0);
    if (depth >= limits.maxQueueDepth) {
      throw new DiffIdError('QUEUE_FULL', `the queue holds ${depth} jobs, its limit`, { retryAfterSeconds: 30 });
    }
    if (owner === null) return;
    const open = ownerOpenJobsKey(prefix, owner);
    const entries = await redis.zrange(open, 0, -1, 'WITHSCORES');
    let jobs = 0;
    let queued = 0;
    for (let i = 0; i < entries.length; i += 2) {
      const id = entries[i] as string;
      const state = await queue.getJobState(id);
      if (state === 'completed' || state === 'failed' || state === 'unknown') await redis.zrem(open, id);
      else {
        jobs++;
        queued += Number(entries[i + 1]);
      }
    }
    if (jobs >= limits.maxJobsPerKey) {
      throw new DiffIdError('TOO_MANY_JOBS', `this key has ${jobs} jobs queued or running, its limit; wait for some to finish`, { retryAfterSeconds: 10 });
    }
    if (queued + cost > limits.maxQueuedStepsPerKey) {
      throw new DiffIdError('TOO_MANY_JOBS', `this key has ${queued} steps of work queued and this job adds ${cost}; its limit is ${limits.maxQueuedStepsPerKey}; wait for some jobs to finish`, { retryAfterSeconds: 10 });
    }
  };

  return {
    async submit(kind, params, files, owner, webhook) {
      const id = randomUUID();
      const keys = jobKeys(prefix, id);
      const payload = { kind, params, ...(owner === null ? {} : { owner }), ...(webhook ? { webhook } : {}) } as JobPayload;
      await redisCall(async () => {
        const cost = plannedCost(payload);
        await admit(owner, cost);
        if (owner !== null) await redis.zadd(ownerOpenJobsKey(prefix, owner), cost, id);
        const tx = redis.multi();
        for (const name of inputNames(kind)) {
          (files[name] ?? []).forEach((bytes, i) => tx.set(keys.input(name, i), bytes, 'EX', options.inputTtlSeconds));
        }
        await tx.exec();
        try {
          await queue.add(kind, payload, {
            jobId: id,
            priority: JOB_PRIORITY[kind],
            attempts: options.attempts,
            backoff: { type: 'exponential', delay: 2000 },
            removeOnComplete: { age: options.resultTtlSeconds },
            removeOnFail: { age: options.resultTtlSeconds },
          });
        } catch (err) {
          await redis.del(...keys.inputs(payload)).catch(() => undefined);
          throw err;
        }
      });
      return id;
    },

    view,

    async cancel(id, owner) {
      const current = await readOwn(id, owner);
      if (!current) throw new DiffIdError('JOB_NOT_FOUND', `no job ${id}; it may have expired`);
      const { view: before, payload } = current;
      if (before.status === 'canceled' || !payload) return before;
      if (isTerminal(before.status)) throw new DiffIdError('JOB_FINISHED', `job ${id} has already ${before.status}; there is nothing to cancel`);
      const keys = jobKeys(prefix, id);
      const canceled = canceledView(before, new Date());
      await redisCall(async () => {
        await redis.set(keys.canceled, JSON.stringify({ owner: current.owner, view: canceled }), 'EX', options.resultTtlSeconds);
        await redis.publish(cancelChannel(prefix), id);
        // A queued job is removed outright; a running one is locked and stops at its next step.
        if (before.status === 'queued') await queue.remove(id).catch(() => 0);
        await redis.del(...keys.inputs(payload), ...keys.results(plannedImages(payload)), keys.done);
        await announce(webhooks as DeliveryQueue, payload, id, 'canceled');
      });
      watcher.notify(id);
      return canceled;
    },

    async image(id, index, owner) {
      const v = await view(id, owner);
      if (!v || v.status !== 'succeeded') return null;
      return redisCall(() => redis.getBuffer(jobKeys(prefix, id).result(index)));
    },

    async animation(id, format, owner) {
      const v = await view(id, owner);
      if (!v || v.status !== 'succeeded') return null;
      return redisCall(() => redis.getBuffer(jobKeys(prefix, id).animation(format)));
    },

    watch: watcher.watch,
    waitFor: watcher.waitFor,
    bundleInfo,

    counts: () => redisCall(() => queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'completed', 'failed')),

    async ping() {
      await redisCall(async () => {
        const pong = await redis.ping();
        if (pong !== 'PONG') throw new Error(`unexpected PING reply ${pong}`);
      });
    },

    async close() {
      await watcher.close();
      await queue.close();
      await webhooks.close();
    },
  };
}
