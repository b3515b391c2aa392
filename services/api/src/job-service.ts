// Jobs as the API sees them: submit (images to Redis under their own keys, the job to BullMQ),
// read back a public view (job-view.ts), cancel, fetch result PNGs, and watch (job-watch.ts).

import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { DEFAULT_SETTINGS } from '@diffid/shared/settings';
import { admission, type AdmissionLimits } from '@diffid/shared/admission';
import { batchLedger } from '@diffid/shared/batch-ledger';
import {
  DiffIdError,
  jobPriority,
  batchJobId,
  batchKeys,
  inputNames,
  bundleInfoKey,
  cancelChannel,
  jobKeys,
  ownerJobsKey,
  queueKeys,
  plannedCost,
  plannedImages,
  announce,
  webhookQueueName,
  type DeliveryQueue,
  type WebhookDelivery,
  type WebhookTarget,
  type BatchRef,
  type AnimationFormat,
  type BundleInfo,
  type InputName,
  type JobKind,
  type JobPayload,
  type JobResult,
  type ParamsOf,
} from '@diffid/shared/contract';
import { canceledView, isTerminal, jobView, type JobView, type QueuePlace } from './job-view.ts';
import { createJobWatcher, type JobWatcher } from './job-watch.ts';
import { cursorAt, parseCursor, sortedPage, type Entry } from './sorted-pages.ts';

export interface JobServiceOptions {
  redis: Redis;
  prefix: string;
  queueName: string;
  /** How long uploads wait for a worker; long, so that accepted work is not lost in a backlog. */
  inputTtlSeconds: number;
  /** How long results and finished jobs are kept. */
  resultTtlSeconds: number;
  attempts: number;
  /** Admission limits (@diffid/shared/admission); none when left out (tests of other things). */
  limits?: AdmissionLimits;
}

/**
 * Whose request it is: a tenant's name, or null when the API runs without keys. Jobs of another
 * owner are answered as unknown.
 */
export type Owner = string | null;

/** A job's uploaded files, by the names its form takes them under (several for a repeated field). */
export type InputFiles = Partial<Record<InputName, Buffer[]>>;

export interface JobService extends Pick<JobWatcher, 'watch' | 'waitFor'> {
  /**
   * Queues a job; `webhook`, when given, was checked by the caller (webhook-policy.ts). A job of
   * a batch comes with its place in it, and its id is fixed by that place (batchJobId).
   */
  submit<K extends JobKind>(kind: K, params: ParamsOf[K], files: InputFiles, owner: Owner, webhook?: WebhookTarget, batch?: BatchRef): Promise<string>;
  /**
   * Refuses (400) a job that no key could ever have admitted: more planned U-Net steps than
   * DIFFID_MAX_QUEUED_STEPS_PER_KEY. A batch checks each job with it, so that no job waits for
   * room that will never come.
   */
  checkCost(payload: Pick<JobPayload, 'kind' | 'params'>): void;
  view(id: string, owner: Owner): Promise<JobView | null>;
  /** A page of the owner's jobs (or of one batch's, checked as theirs by the caller), newest first, of one status and kind when asked. */
  list(owner: Owner, query: JobListQuery): Promise<{ jobs: JobView[]; next_cursor: string | null }>;
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

/** What GET /jobs filters and pages by. */
export interface JobListQuery {
  status?: JobView['status'];
  kind?: JobKind;
  batch?: string;
  limit: number;
  cursor?: string;
}

/** The most jobs a key's list keeps: its newest. */
export const MAX_LISTED_JOBS = 100_000;
/** The most entries one GET /jobs looks through for its filters before it answers with a cursor. */
const MAX_SCANNED = 1000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Wraps Redis failures as the 503s the catalogue promises: full, or not answering. */
async function redisCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof DiffIdError) throw err;
    const message = (err as Error).message;
    if (isOutOfMemory(err)) throw new DiffIdError('STORAGE_FULL', `Redis refused a write: ${message}`, { cause: err, retryAfterSeconds: 30 });
    throw new DiffIdError('QUEUE_UNAVAILABLE', `Redis did not answer: ${message}`, { cause: err });
  }
}

/**
 * Redis at its maxmemory refuses writes with an OOM reply (the connection is fine); in a MULTI the
 * refusal comes back as EXECABORT, with the OOM among ioredis' `previousErrors`.
 */
function isOutOfMemory(err: unknown): boolean {
  const oom = (e: unknown) => e instanceof Error && /^OOM\b/.test(e.message);
  return oom(err) || ((err as { previousErrors?: unknown[] }).previousErrors ?? []).some(oom);
}

/** Runs a MULTI and throws the first command's error, which ioredis leaves in the replies. */
async function execOrThrow(tx: ReturnType<Redis['multi']>): Promise<void> {
  const replies = (await tx.exec()) ?? [];
  const failed = replies.find(([err]) => err);
  if (failed) throw failed[0];
}

export function createJobService(options: JobServiceOptions): JobService {
  const { redis, prefix, queueName } = options;
  const queue = new Queue<JobPayload, JobResult>(queueName, { connection: redis, prefix });
  const webhooks = new Queue<WebhookDelivery>(webhookQueueName(queueName), { connection: redis, prefix });
  const admitted = admission(redis, prefix, queueName, options.limits, options.inputTtlSeconds);
  const ledger = batchLedger(redis, prefix, webhooks as DeliveryQueue);
  let bundleCache: { at: number; info: BundleInfo | null } | null = null;

  const bundleInfo = async (): Promise<BundleInfo | null> => {
    const now = Date.now();
    if (bundleCache && now - bundleCache.at < 5000) return bundleCache.info;
    const raw = await redisCall(() => redis.get(bundleInfoKey(prefix)));
    const info = raw ? (JSON.parse(raw) as BundleInfo) : null;
    bundleCache = { at: now, info };
    return info;
  };

  // The pace of late: the mean time of the last 20 finished jobs over the workers serving the
  // queue, read at most every 5 s (it reads 20 job hashes and the client list).
  let paceCache: { at: number; secondsPerJob: number | undefined } | null = null;
  const pace = async (): Promise<number | undefined> => {
    const now = Date.now();
    if (paceCache && now - paceCache.at < 5000) return paceCache.secondsPerJob;
    const recent = await queue.getJobs(['completed'], 0, 19, false);
    const seconds = recent.flatMap((j) => (j.finishedOn && j.processedOn ? [(j.finishedOn - j.processedOn) / 1000] : []));
    const workers = Math.max(1, await queue.getWorkersCount());
    const secondsPerJob = seconds.length > 0 ? seconds.reduce((a, b) => a + b, 0) / seconds.length / workers : undefined;
    paceCache = { at: now, secondsPerJob };
    return secondsPerJob;
  };
  const lines = queueKeys(prefix, queueName);
  /** Where a job waiting in line stands: workers take the wait list first, then by priority and age. */
  const placeOf = async (id: string, state: string): Promise<QueuePlace | undefined> => {
    if (state !== 'prioritized' && state !== 'waiting') return undefined;
    const waiting = await redis.llen(lines.wait);
    // The wait list is pushed on the left and taken from the right.
    const ahead = state === 'prioritized' ? waiting + ((await redis.zrank(lines.prioritized, id)) ?? 0) : waiting - 1 - ((await redis.lpos(lines.wait, id)) ?? 0);
    const secondsPerJob = await pace();
    return { ahead: Math.max(0, ahead), ...(secondsPerJob === undefined ? {} : { secondsPerJob }) };
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
        place: await placeOf(id, state),
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

  return {
    async submit(kind, params, files, owner, webhook, batch) {
      const id = batch ? batchJobId(batch.id, batch.index) : randomUUID();
      const keys = jobKeys(prefix, id);
      const payload = { kind, params, ...(owner === null ? {} : { owner }), ...(webhook ? { webhook } : {}), ...(batch ? { batch } : {}) } as JobPayload;
      const uploads = inputNames(kind).flatMap((name) => (files[name] ?? []).map((bytes, i) => ({ key: keys.input(name, i), bytes })));
      const claim = { id, owner, steps: plannedCost(payload), bytes: uploads.reduce((n, u) => n + u.bytes.length, 0) };
      await redisCall(async () => {
        await admitted.reserve(claim);
        try {
          const tx = redis.multi();
          for (const u of uploads) tx.set(u.key, u.bytes, 'EX', options.inputTtlSeconds);
          await execOrThrow(tx);
          await queue.add(kind, payload, {
            jobId: id,
            priority: jobPriority(kind, 'priority' in params ? params.priority : undefined),
            attempts: options.attempts,
            backoff: { type: 'exponential', delay: 2000 },
            removeOnComplete: { age: options.resultTtlSeconds },
            removeOnFail: { age: options.resultTtlSeconds },
          });
        } catch (err) {
          await redis.del(...uploads.map((u) => u.key)).catch(() => undefined);
          await admitted.withdraw(claim).catch(() => undefined);
          throw err;
        }
        await admitted.confirm(id);
        // The key's list: this job, and none older than a job can be kept; a batch's own list.
        const listed = ownerJobsKey(prefix, owner);
        const now = Date.now();
        const tx = redis
          .multi()
          .zadd(listed, now, id)
          .zremrangebyscore(listed, '-inf', now - (options.inputTtlSeconds + options.resultTtlSeconds) * 1000)
          .zremrangebyrank(listed, 0, -(MAX_LISTED_JOBS + 1));
        if (batch) tx.zadd(batchKeys(prefix, batch.id).jobs, now, id).expire(batchKeys(prefix, batch.id).jobs, options.inputTtlSeconds + options.resultTtlSeconds);
        await tx.exec();
      });
      return id;
    },

    async list(owner, query) {
      const key = query.batch === undefined ? ownerJobsKey(prefix, owner) : batchKeys(prefix, query.batch).jobs;
      let cursor = parseCursor(query.cursor);
      const jobs: JobView[] = [];
      let last: Entry | undefined;
      let scanned = 0;
      let more = true;
      while (jobs.length < query.limit && scanned < MAX_SCANNED) {
        const entries = await redisCall(() => sortedPage(redis, key, { ...(cursor ? { cursor } : {}), count: 100, descending: true }));
        if (entries.length === 0) {
          more = false;
          break;
        }
        for (const e of entries) {
          scanned++;
          last = cursor = e;
          const v = await view(e.id, owner);
          if (!v) {
            // Expired or removed by BullMQ: no longer listed.
            await redis.zrem(key, e.id).catch(() => 0);
            continue;
          }
          if ((query.status && v.status !== query.status) || (query.kind && v.kind !== query.kind)) continue;
          jobs.push(v);
          if (jobs.length === query.limit) break;
        }
      }
      if (more && last) more = (await redisCall(() => sortedPage(redis, key, { cursor: last, count: 1, descending: true }))).length > 0;
      return { jobs, next_cursor: more && last ? cursorAt(last) : null };
    },

    view,

    checkCost(payload) {
      const steps = plannedCost(payload as JobPayload);
      const max = options.limits?.maxQueuedStepsPerKey;
      if (max !== undefined && steps > max) {
        throw new DiffIdError('VALIDATION', `a ${payload.kind} job of these parameters plans ${steps} U-Net steps, more than a key may have queued at once (${max}, DIFFID_MAX_QUEUED_STEPS_PER_KEY); lower steps, images or frames`);
      }
    },

    async cancel(id, owner) {
      const current = await readOwn(id, owner);
      if (!current) throw new DiffIdError('JOB_NOT_FOUND', `no job ${id}; it may have expired`);
      const { view: before, payload } = current;
      // A cancel asked again still counts the job in its batch (the first may have failed there).
      if (before.status === 'canceled' && before.batch) await ledger.record({ batch: { id: before.batch, index: 0 } }, id, 'canceled');
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
        await admitted.releaseInputs(id);
        await ledger.record(payload, id, 'canceled');
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
        // A Redis at its maxmemory answers PING but refuses every write: not ready either.
        const memory = await redis.info('memory');
        const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(memory)?.[1] ?? 0);
        const max = field('maxmemory');
        if (max > 0 && field('used_memory') >= max) {
          throw new DiffIdError('STORAGE_FULL', `Redis uses ${field('used_memory')} of its maxmemory ${max} bytes`, { retryAfterSeconds: 30 });
        }
      });
    },

    async close() {
      await watcher.close();
      await queue.close();
      await webhooks.close();
    },
  };
}
