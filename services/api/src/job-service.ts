// Jobs as the API sees them: submit (images to Redis under their own keys, the job to BullMQ),
// read back a public view (job-view.ts), cancel, fetch result PNGs, and watch (job-watch.ts).

import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  DEFAULT_SETTINGS,
  DiffIdError,
  JOB_INPUTS,
  JOB_PRIORITY,
  inputNames,
  bundleInfoKey,
  cancelChannel,
  jobKeys,
  plannedImages,
  type BundleInfo,
  type JobKind,
  type JobPayload,
  type JobResult,
  type PayloadOf,
} from '@diffid/shared';
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
}

/** A job kind's uploaded files, by the names its form takes them under (several for a repeated field). */
export type InputFiles<K extends JobKind> = { [N in keyof (typeof JOB_INPUTS)[K]]: Buffer[] };

export interface JobService extends Pick<JobWatcher, 'watch' | 'waitFor'> {
  submit<K extends JobKind>(kind: K, params: PayloadOf<K>['params'], files: InputFiles<K>): Promise<string>;
  view(id: string): Promise<JobView | null>;
  cancel(id: string): Promise<JobView>;
  image(id: string, index: number): Promise<Buffer | null>;
  /** What the workers' bundle says about itself (null before any worker started). */
  bundleInfo(): Promise<BundleInfo | null>;
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
  let bundleCache: { at: number; info: BundleInfo | null } | null = null;

  const bundleInfo = async (): Promise<BundleInfo | null> => {
    const now = Date.now();
    if (bundleCache && now - bundleCache.at < 5000) return bundleCache.info;
    const raw = await redisCall(() => redis.get(bundleInfoKey(prefix)));
    const info = raw ? (JSON.parse(raw) as BundleInfo) : null;
    bundleCache = { at: now, info };
    return info;
  };

  /** The job's view and payload; null when there is no such job. */
  const read = async (id: string): Promise<{ view: JobView; payload: JobPayload | null } | null> => {
    if (!UUID.test(id)) return null;
    return redisCall(async () => {
      const tombstone = await redis.get(jobKeys(prefix, id).canceled);
      if (tombstone) return { view: JSON.parse(tombstone) as JobView, payload: null };
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
      return view ? { view, payload: job.data } : null;
    });
  };

  const view = async (id: string) => (await read(id))?.view ?? null;
  const watcher = createJobWatcher({ redis, prefix, queueName, view });

  return {
    async submit(kind, params, files) {
      const id = randomUUID();
      const keys = jobKeys(prefix, id);
      await redisCall(async () => {
        const tx = redis.multi();
        for (const name of inputNames(kind)) {
          ((files as Record<string, Buffer[]>)[name] ?? []).forEach((bytes, i) => tx.set(keys.input(name, i), bytes, 'EX', options.inputTtlSeconds));
        }
        await tx.exec();
        try {
          await queue.add(kind, { kind, params } as JobPayload, {
            jobId: id,
            priority: JOB_PRIORITY[kind],
            attempts: options.attempts,
            backoff: { type: 'exponential', delay: 2000 },
            removeOnComplete: { age: options.resultTtlSeconds },
            removeOnFail: { age: options.resultTtlSeconds },
          });
        } catch (err) {
          await redis.del(...keys.inputs(kind)).catch(() => undefined);
          throw err;
        }
      });
      return id;
    },

    view,

    async cancel(id) {
      const current = await read(id);
      if (!current) throw new DiffIdError('JOB_NOT_FOUND', `no job ${id}; it may have expired`);
      const { view: before, payload } = current;
      if (before.status === 'canceled' || !payload) return before;
      if (isTerminal(before.status)) throw new DiffIdError('JOB_FINISHED', `job ${id} has already ${before.status}; there is nothing to cancel`);
      const keys = jobKeys(prefix, id);
      const canceled = canceledView(before, new Date());
      await redisCall(async () => {
        await redis.set(keys.canceled, JSON.stringify(canceled), 'EX', options.resultTtlSeconds);
        await redis.publish(cancelChannel(prefix), id);
        // A queued job is removed outright; a running one is locked and stops at its next step.
        if (before.status === 'queued') await queue.remove(id).catch(() => 0);
        const results = Array.from({ length: plannedImages(payload) }, (_, i) => keys.result(i));
        await redis.del(...keys.inputs(payload.kind), ...results, keys.done);
      });
      watcher.notify(id);
      return canceled;
    },

    async image(id, index) {
      const v = await view(id);
      if (!v || v.status !== 'succeeded') return null;
      return redisCall(() => redis.getBuffer(jobKeys(prefix, id).result(index)));
    },

    watch: watcher.watch,
    waitFor: watcher.waitFor,
    bundleInfo,

    async ping() {
      await redisCall(async () => {
        const pong = await redis.ping();
        if (pong !== 'PONG') throw new Error(`unexpected PING reply ${pong}`);
      });
    },

    async close() {
      await watcher.close();
      await queue.close();
    },
  };
}
