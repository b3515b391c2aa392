// The worker process's main thread: loads the bundle on the inference thread, then takes jobs
// from BullMQ and hands each to its kind's handler. This is the one place that knows BullMQ:
// cancels from the API's Redis channel become BullMQ's own job cancel (the processor's
// AbortSignal), and handler errors become final (UnrecoverableError) or retryable failures.
//
// At least once, made safe (docs/operations.md):
// - Locks last long (DIFFID_LOCK_SECONDS, renewed every 15 s), so a Redis pause of a minute
//   costs no lock. A worker that does lose a job's lock stops that job at its next step.
// - A killed worker is found by its Redis connection, not by its lock: every few seconds each
//   worker looks at the active jobs, and a job whose owner's connection is gone has its lock
//   removed, so BullMQ's stalled check gives it to another worker within a couple of checks.
// - A job may stall `attempts − 1` times; after that it fails as WORKER_LOST, and its uploads are
//   deleted as for any final failure.
// - The handler writes the result record with the PNGs and drops the uploads in one transaction;
//   a later run of the same job returns that record (handlers.ts).

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  ANIMATION_FORMATS,
  DiffIdError,
  announce,
  bundleInfoKey,
  cancelChannel,
  formatFailure,
  jobKeys,
  webhookQueueName,
  type DeliveryQueue,
  type WebhookEvent,
  type BundleInfo,
  type JobKind,
  type JobPayload,
  type JobResult,
} from '@diffid/shared';
import { assertHandlersComplete, createHandlers, type Handler, type HandlerTable } from './handlers.ts';
import { InferenceCanceled, startInference, type InferenceClient } from './inference-client.ts';
import type { ThreadOptions } from './inference-protocol.ts';
import { createWorkerMetrics, type WorkerMetrics } from './metrics.ts';
import { ffmpegAvailable } from './video.ts';

export interface WorkerServiceOptions extends ThreadOptions {
  redis: Redis;
  /** Key prefix shared with the API (BullMQ's and ours). */
  prefix: string;
  queueName: string;
  resultTtlSeconds: number;
  /** Jobs run at once, their denoising batched (DIFFID_BATCH_JOBS); 1 by default. */
  batchJobs?: number;
  /** How long a job's lock lasts without renewal. */
  lockDurationMs?: number;
  /** How often locks are renewed (at most a quarter of the lock). */
  lockRenewMs?: number;
  /** How often stalled jobs and lost workers are looked for. */
  stalledIntervalMs?: number;
  /** Tries of a job: its failures as BullMQ counts them, and the times its worker may be lost. */
  jobAttempts?: number;
  /** This worker's name in Redis (its connections carry it); unique per process by default. */
  name?: string;
  /** Where job metrics are recorded; a registry of its own by default. */
  metrics?: WorkerMetrics;
  /** Replaces the handlers (tests); defaults to createHandlers over this service's Redis and thread. */
  handlers?: (deps: Parameters<typeof createHandlers>[0]) => HandlerTable;
  log?: (event: string, fields: Record<string, unknown>) => void;
}

export interface WorkerService {
  inference: InferenceClient;
  metrics: WorkerMetrics;
  worker: Worker<JobPayload, JobResult>;
  close(): Promise<void>;
}

/** The abort reason of a job whose lock this worker lost. */
const LOCK_LOST = 'diffid:lock-lost';

/** Removes a lock if it still holds the given token (a lost worker's), atomically. */
const RELEASE_LOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/**
 * Finds active jobs whose worker is gone — no Redis connection carries its name any more (it was
 * killed, or its host vanished) — and releases their locks, so that BullMQ's next stalled check
 * gives them to a live worker. A paused Redis keeps its connections, so a pause frees nothing.
 * Returns the ids released.
 */
export async function reapLostWorkers(redis: Redis, prefix: string, queueName: string): Promise<string[]> {
  const active = await redis.lrange(`${prefix}:${queueName}:active`, 0, -1);
  if (active.length === 0) return [];
  const clients = String(await redis.call('CLIENT', 'LIST'));
  const connected = new Set([...clients.matchAll(/ name=(\S*)/g)].map((m) => m[1] as string).filter((n) => n.includes(':w:')).map((n) => n.slice(n.lastIndexOf(':w:') + 3)));
  const released: string[] = [];
  for (const id of active) {
    const owner = await redis.get(jobKeys(prefix, id).owner);
    if (!owner) continue;
    const { worker, token } = JSON.parse(owner) as { worker: string; token: string };
    if (connected.has(worker)) continue;
    if ((await redis.eval(RELEASE_LOCK, 1, `${prefix}:${queueName}:${id}:lock`, token)) === 1) released.push(id);
  }
  return released;
}

/** Bad input and cancels are final; everything else is left to BullMQ's retries. */
export function finalFailure(err: unknown): UnrecoverableError | null {
  if (err instanceof InferenceCanceled) return new UnrecoverableError(formatFailure('DIFFID_ERR_JOB_CANCELED', 'the job was canceled'));
  if (err instanceof DiffIdError) return new UnrecoverableError(formatFailure(err.code, err.message));
  return null;
}

export async function startWorkerService(options: WorkerServiceOptions): Promise<WorkerService> {
  const log = options.log ?? (() => {});
  const inference = await startInference({
    modelDir: options.modelDir,
    executionProvider: options.executionProvider,
    intraOpThreads: options.intraOpThreads,
    maxBatch: options.maxBatch,
    heapMb: options.heapMb,
  });
  const video = ffmpegAvailable();
  const deps = { redis: options.redis, prefix: options.prefix, inference, resultTtlSeconds: options.resultTtlSeconds, video };
  const handlers = (options.handlers ?? createHandlers)(deps);
  try {
    assertHandlersComplete(handlers);
  } catch (err) {
    await inference.close();
    throw err;
  }
  log('bundle_loaded', { bundle: inference.bundle.name, dir: inference.bundle.dir });
  // The API fills omitted request settings from the bundle's defaults and plans step totals with max_batch.
  const info: BundleInfo = { ...inference.bundle.info, max_batch: options.maxBatch, animations: ANIMATION_FORMATS.filter((f) => f !== 'mp4' || video) };
  await options.redis.set(bundleInfoKey(options.prefix), JSON.stringify(info));

  const name = options.name ?? `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  const lockDuration = options.lockDurationMs ?? 120_000;
  const stalledInterval = options.stalledIntervalMs ?? 5_000;
  const attempts = options.jobAttempts ?? 3;
  const metrics = options.metrics ?? createWorkerMetrics(() => inference.batchStats(), () => inference.gcStats());
  const dropInputs = (id: string, kind: JobKind) => options.redis.del(...jobKeys(options.prefix, id).inputs(kind)).catch(() => 0);
  // Webhook deliveries are queued here and sent by the API processes (services/api/src/webhook-dispatcher.ts).
  const webhooks = new Queue(webhookQueueName(options.queueName), { connection: options.redis, prefix: options.prefix });
  const announceEvent = (job: Job<JobPayload, JobResult>, event: WebhookEvent) =>
    announce(webhooks as unknown as DeliveryQueue, job.data, job.id as string, event).catch((err: Error) => log('webhook_not_queued', { id: job.id, event, err: err.message }));

  const worker = new Worker<JobPayload, JobResult>(
    options.queueName,
    // Three parameters: BullMQ passes the AbortSignal only to processors that declare it.
    async (job: Job<JobPayload, JobResult>, token: string | undefined, signal: AbortSignal | undefined) => {
      const handler = handlers[job.data.kind] as Handler<JobKind> | undefined;
      if (!handler) throw new UnrecoverableError(formatFailure('DIFFID_ERR_INFERENCE_FAILED', `no handler for job kind "${job.data.kind}"`));
      const id = job.id as string;
      const kind = job.data.kind;
      log('job_started', { id, kind, attempt: job.attemptsMade + 1, stalls: job.stalledCounter });
      await options.redis.set(jobKeys(options.prefix, id).owner, JSON.stringify({ worker: name, token }), 'EX', options.resultTtlSeconds);
      await announceEvent(job, 'start');
      const started = performance.now();
      metrics.wait.observe({ kind }, Math.max(0, Date.now() - job.timestamp) / 1000);
      metrics.busy.inc();
      // Progress arrives sampled (every 200 ms at most): a step's time is the mean over the steps between samples.
      let last = { at: started, step: 0 };
      const ended = (outcome: string) => {
        metrics.busy.dec();
        metrics.duration.observe({ kind, outcome: outcome === 'ok' ? 'ok' : 'error' }, (performance.now() - started) / 1000);
        metrics.outcomes.inc({ kind, code: outcome });
      };
      try {
        const result = await handler(job.data, {
          id,
          signal: signal ?? new AbortController().signal,
          progress: (p) => {
            const now = performance.now();
            const steps = p.step - last.step;
            for (let k = 0; k < steps; k++) metrics.step.observe((now - last.at) / 1000 / steps);
            if (steps > 0) last = { at: now, step: p.step };
            void job.updateProgress(p).catch(() => undefined);
          },
        });
        ended('ok');
        for (const image of result.images) {
          for (const v of [image.arcface_similarity, image.arcface_similarity_a, image.arcface_similarity_b]) if (typeof v === 'number') metrics.similarity.observe({ kind }, v);
        }
        return result;
      } catch (err) {
        // The lock went to another run: stop quietly; that run finishes the job.
        if (signal?.reason === LOCK_LOST) {
          ended('lock_lost');
          throw new Error(`job ${id}: this worker lost its lock`);
        }
        const final = finalFailure(err);
        ended(err instanceof DiffIdError ? err.code : err instanceof InferenceCanceled ? 'DIFFID_ERR_JOB_CANCELED' : 'DIFFID_ERR_INFERENCE_FAILED');
        if (!final) throw err;
        await dropInputs(id, job.data.kind);
        throw final;
      }
    },
    {
      connection: options.redis,
      prefix: options.prefix,
      name,
      // Several jobs at once only when their steps are batched (unet-batch.ts): otherwise they would
      // only take turns on the one inference thread.
      concurrency: options.batchJobs ?? 1,
      lockDuration,
      lockRenewTime: options.lockRenewMs ?? Math.min(15_000, lockDuration / 4),
      stalledInterval,
      maxStalledCount: attempts - 1,
      autorun: true,
    },
  );
  worker.on('completed', (job) => {
    log('job_succeeded', { id: job.id, kind: job.data.kind, timings_ms: job.returnvalue?.timings_ms });
    void announceEvent(job, 'completed');
  });
  worker.on('failed', (job, err) => {
    log('job_failed', { id: job?.id, kind: job?.data.kind, reason: err.message });
    // A job that will not run again (its tries spent, or its workers lost too often) keeps no uploads.
    // A canceled job was announced as canceled by the API that canceled it.
    const canceled = err.message.startsWith('DIFFID_ERR_JOB_CANCELED');
    if (job?.id) {
      void job.getState().then(
        async (state) => {
          if (state !== 'failed') return;
          await dropInputs(job.id as string, job.data.kind);
          if (!canceled) await announceEvent(job, 'failed');
        },
        () => undefined,
      );
    }
  });
  // Redis outages and lost locks surface here; without a listener an 'error' event would end the process.
  worker.on('error', (err) => log('worker_error', { err: err.message }));
  worker.on('lockRenewalFailed', (ids) => {
    for (const id of ids) {
      log('job_lock_lost', { id });
      worker.cancelJob(id, LOCK_LOST);
    }
  });
  // A Redis user without CLIENT LIST leaves recovery to lock expiry: say so once.
  let reaperWarned = false;
  const reaper = setInterval(
    () =>
      void reapLostWorkers(options.redis, options.prefix, options.queueName).then(
        (ids) => ids.forEach((id) => log('job_worker_lost', { id })),
        (err: Error) => {
          if (reaperWarned) return;
          reaperWarned = true;
          log('reaper_unavailable', { err: err.message, effect: 'a killed worker\'s job waits for its lock to expire (DIFFID_LOCK_SECONDS)' });
        },
      ),
    stalledInterval,
  );

  const subscriber = options.redis.duplicate();
  subscriber.on('error', () => undefined); // reconnects on its own; the main connection logs outages
  await subscriber.subscribe(cancelChannel(options.prefix));
  subscriber.on('message', (_channel: string, jobId: string) => worker.cancelJob(jobId, 'canceled'));
  await worker.waitUntilReady();

  return {
    inference,
    metrics,
    worker,
    async close() {
      clearInterval(reaper);
      await worker.close();
      await webhooks.close();
      await subscriber.quit();
      await inference.close();
    },
  };
}
