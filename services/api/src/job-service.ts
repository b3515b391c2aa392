// Jobs as the API sees them: submit (images to Redis under their own keys, the job to BullMQ),
// read back a public view, cancel, fetch result PNGs, and watch for changes.

import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  DiffIdError,
  INPUT_NAMES,
  JOB_PRIORITY,
  bundleInfoKey,
  catalogueEntry,
  cancelChannel,
  jobKeys,
  parseFailure,
  type BundleInfo,
  type JobKind,
  type JobPayload,
  type JobProgress,
  type JobResult,
} from '@diffid/shared';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';

/** The public shape of a job (openapi.yaml, schema Job). */
export interface JobView {
  id: string;
  kind: JobKind;
  status: JobStatus;
  progress: JobProgress;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  params: JobPayload['params'];
  error?: { code: string; message: string };
  result?: Omit<JobResult, 'images'> & { images: Array<JobResult['images'][number] & { url: string }> };
  links: { self: string; events: string };
}

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

export interface JobService {
  submit<K extends JobKind>(kind: K, params: Extract<JobPayload, { kind: K }>['params'], files: Record<string, Buffer>): Promise<string>;
  view(id: string): Promise<JobView | null>;
  cancel(id: string): Promise<JobView>;
  image(id: string, index: number): Promise<Buffer | null>;
  /** Calls `onChange` with the job's view now and on every change; returns an unsubscribe. */
  watch(id: string, onChange: (view: JobView | null) => void): () => void;
  /** Resolves with the job's view once it is finished, or as it is when `ms` have passed. */
  waitFor(id: string, ms: number): Promise<JobView | null>;
  /** What the workers' bundle says about itself (null before any worker started). */
  bundleInfo(): Promise<BundleInfo | null>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null);
const links = (id: string) => ({ self: `/jobs/${id}`, events: `/jobs/${id}/events` });
const TERMINAL: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'canceled']);

export function isTerminal(status: JobStatus): boolean {
  return TERMINAL.has(status);
}

function statusOf(state: string): JobStatus | null {
  if (state === 'active') return 'running';
  if (state === 'completed') return 'succeeded';
  if (state === 'failed') return 'failed';
  if (state === 'waiting' || state === 'delayed' || state === 'prioritized' || state === 'waiting-children') return 'queued';
  return null;
}

/** A failed job's public error: catalogue 4xx codes as the worker said them, 5xx as their title. */
function publicError(reason: string | undefined): { code: string; message: string } {
  const parsed = parseFailure(reason);
  const entry = parsed ? catalogueEntry(parsed.code) : undefined;
  if (parsed && entry && entry.status < 500) return parsed;
  const fallback = catalogueEntry('DIFFID_ERR_INFERENCE_FAILED');
  return { code: 'DIFFID_ERR_INFERENCE_FAILED', message: fallback?.title ?? 'inference failed' };
}

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
  let events: QueueEvents | null = null;
  let eventsConnection: Redis | null = null;
  const watchers = new Map<string, Set<() => void>>();
  let bundleCache: { at: number; info: BundleInfo | null } | null = null;

  const toView = (job: Job<JobPayload, JobResult>, state: string): JobView | null => {
    const status = statusOf(state);
    if (!status) return null;
    const id = job.id as string;
    const raw = job.progress as Partial<JobProgress> | number;
    const progress: JobProgress =
      typeof raw === 'object' && raw !== null ? { step: raw.step ?? 0, total: raw.total ?? 0 } : { step: 0, total: job.data.params.steps };
    const view: JobView = {
      id,
      kind: job.data.kind,
      status,
      progress,
      created_at: iso(job.timestamp) as string,
      started_at: iso(job.processedOn),
      finished_at: status === 'succeeded' || status === 'failed' ? iso(job.finishedOn) : null,
      params: job.data.params,
      links: links(id),
    };
    if (status === 'failed') view.error = publicError(job.failedReason);
    if (status === 'succeeded' && job.returnvalue) {
      view.result = { ...job.returnvalue, images: job.returnvalue.images.map((img) => ({ ...img, url: `/jobs/${id}/images/${img.index}.png` })) };
    }
    return view;
  };

  const view = async (id: string): Promise<JobView | null> => {
    if (!UUID.test(id)) return null;
    return redisCall(async () => {
      const tombstone = await redis.get(jobKeys(prefix, id).canceled);
      if (tombstone) return JSON.parse(tombstone) as JobView;
      // State first, then the job: a job read after its state can only be further along, so a
      // succeeded state always comes with its result.
      const state = await queue.getJobState(id);
      const job = await queue.getJob(id);
      return job ? toView(job, state) : null;
    });
  };

  const notify = (id: string) => watchers.get(id)?.forEach((fn) => fn());

  const ensureEvents = () => {
    if (events) return;
    // QueueEvents blocks on its own connection, which must queue commands while it (re)connects.
    eventsConnection = redis.duplicate({ lazyConnect: false, enableOfflineQueue: true, maxRetriesPerRequest: null });
    events = new QueueEvents(queueName, { connection: eventsConnection, prefix });
    events.on('error', () => undefined);
    for (const name of ['active', 'progress', 'completed', 'failed', 'removed', 'waiting'] as const) {
      events.on(name, ((args: { jobId: string }) => notify(args.jobId)) as never);
    }
  };

  const watch = (id: string, onChange: (view: JobView | null) => void): (() => void) => {
    ensureEvents();
    let last = '';
    let stopped = false;
    const refresh = () => {
      view(id).then(
        (v) => {
          const text = JSON.stringify(v);
          if (!stopped && text !== last) {
            last = text;
            onChange(v);
          }
        },
        () => undefined,
      );
    };
    const set = watchers.get(id) ?? new Set();
    set.add(refresh);
    watchers.set(id, set);
    // Events carry most changes; the poll covers what has no event (a cancel from another API).
    const timer = setInterval(refresh, 2000);
    refresh();
    return () => {
      stopped = true;
      clearInterval(timer);
      set.delete(refresh);
      if (set.size === 0) watchers.delete(id);
    };
  };

  return {
    async submit(kind, params, files) {
      const id = randomUUID();
      const keys = jobKeys(prefix, id);
      const inputs = Object.fromEntries(Object.keys(files).map((name) => [name, keys.input(name)]));
      await redisCall(async () => {
        const tx = redis.multi();
        for (const [name, bytes] of Object.entries(files)) tx.set(keys.input(name), bytes, 'EX', options.inputTtlSeconds);
        await tx.exec();
        try {
          await queue.add(kind, { kind, params, inputs } as JobPayload, {
            jobId: id,
            priority: JOB_PRIORITY[kind],
            attempts: options.attempts,
            backoff: { type: 'exponential', delay: 2000 },
            removeOnComplete: { age: options.resultTtlSeconds },
            removeOnFail: { age: options.resultTtlSeconds },
          });
        } catch (err) {
          await redis.del(...Object.values(inputs)).catch(() => undefined);
          throw err;
        }
      });
      return id;
    },

    view,

    async cancel(id) {
      const current = await view(id);
      if (!current) throw new DiffIdError('JOB_NOT_FOUND', `no job ${id}; it may have expired`);
      if (current.status === 'canceled') return current;
      if (isTerminal(current.status)) throw new DiffIdError('JOB_FINISHED', `job ${id} has already ${current.status}; there is nothing to cancel`);
      const keys = jobKeys(prefix, id);
      const canceled: JobView = {
        ...current,
        status: 'canceled',
        finished_at: new Date().toISOString(),
        error: { code: 'DIFFID_ERR_JOB_CANCELED', message: 'the job was canceled by a DELETE request' },
      };
      await redisCall(async () => {
        await redis.set(keys.canceled, JSON.stringify(canceled), 'EX', options.resultTtlSeconds);
        await redis.publish(cancelChannel(prefix), id);
        // A queued job is removed outright; a running one is locked and stops at its next step.
        if (current.status === 'queued') await queue.remove(id).catch(() => 0);
        const p = current.params;
        const outputs = 'alphas' in p ? p.alphas.length : 'num_images' in p ? p.num_images : 0;
        await redis.del(...INPUT_NAMES.map((n) => keys.input(n)), ...Array.from({ length: outputs }, (_, i) => keys.result(i)));
      });
      notify(id);
      return canceled;
    },

    async image(id, index) {
      if (!UUID.test(id)) return null;
      const v = await view(id);
      if (!v || v.status !== 'succeeded') return null;
      return redisCall(() => redis.getBuffer(jobKeys(prefix, id).result(index)));
    },

    watch,

    waitFor(id, ms) {
      return new Promise((resolve) => {
        let latest: JobView | null = null;
        let settled = false;
        const settle = () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          // The subscription may not exist yet when the first view is already final.
          queueMicrotask(() => unsubscribe());
          resolve(latest);
        };
        const timer = setTimeout(settle, ms);
        const unsubscribe = watch(id, (view) => {
          latest = view;
          if (!view || isTerminal(view.status)) settle();
        });
      });
    },

    async bundleInfo() {
      const now = Date.now();
      if (bundleCache && now - bundleCache.at < 5000) return bundleCache.info;
      const raw = await redisCall(() => redis.get(bundleInfoKey(prefix)));
      const info = raw ? (JSON.parse(raw) as BundleInfo) : null;
      bundleCache = { at: now, info };
      return info;
    },

    async ping() {
      await redisCall(async () => {
        const pong = await redis.ping();
        if (pong !== 'PONG') throw new Error(`unexpected PING reply ${pong}`);
      });
    },

    async close() {
      await events?.close();
      eventsConnection?.disconnect();
      await queue.close();
    },
  };
}
