// The worker process's main thread: loads the bundle on the inference thread, publishes what the
// API needs of it, then takes jobs from BullMQ (processor.ts runs each through the job runner).
// Cancels from the API's Redis channel become BullMQ's own job cancel (the processor's
// AbortSignal); the reaper (reaper.ts) finds jobs whose worker was lost.
//
// At least once, made safe (docs/operations.md):
// - Locks last long (DIFFID_LOCK_SECONDS, renewed every 15 s), so a Redis pause of a minute
//   costs no lock. A worker that does lose a job's lock stops that job at its next step.
// - A killed worker is found by its Redis connection, not by its lock: every few seconds each
//   worker looks at the active jobs, and a job whose owner's connection is gone has its lock
//   removed, so BullMQ's stalled check gives it to another worker within a couple of checks.
// - A job may stall `attempts − 1` times; after that it fails as WORKER_LOST, and its uploads are
//   deleted as for any final failure.
// - The job runner writes the result record with the PNGs and drops the uploads in one
//   transaction; a later run of the same job returns that record (job-runner.ts).

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { admission } from '@diffid/shared/admission';
import { join } from 'node:path';
import { batchLedger } from '@diffid/shared/batch-ledger';
import { c2paCredentials } from '@diffid/shared/c2pa';
import { DEFAULT_SETTINGS } from '@diffid/shared/settings';
import { SERVICE_NAME } from './provenance.ts';
import { ANIMATION_FORMATS, announce, bundleInfoKey, cancelChannel, isCanceled, jobKeys, parseFailure, webhookQueueName, type BundleInfo, type DeliveryQueue, type JobPayload, type JobResult, type WebhookEvent } from '@diffid/shared/contract';
import { startInference, type InferenceClient } from '../thread/client.ts';
import type { ThreadOptions } from '../thread/protocol.ts';
import { createJobRunner } from './job-runner.ts';
import { createWorkerMetrics, type WorkerMetrics } from './metrics.ts';
import { LOCK_LOST, jobProcessor } from './processor.ts';
import { startReaper } from './reaper.ts';
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
  /**
   * The C2PA signing key and certificate chain (DIFFID_C2PA_KEY, DIFFID_C2PA_CERT), else a key and
   * local CA made once in `dir` (by default DIFFID_DATA_DIR's c2pa folder).
   */
  c2pa?: { keyFile?: string; certFile?: string; dir: string };
  log?: (event: string, fields: Record<string, unknown>) => void;
}

export interface WorkerService {
  inference: InferenceClient;
  metrics: WorkerMetrics;
  worker: Worker<JobPayload, JobResult>;
  close(): Promise<void>;
}

/** What the API needs of the workers: the bundle's defaults and image size, the batch that sets a morph's step total, the animations they can make. */
async function publishBundleInfo(options: WorkerServiceOptions, inference: InferenceClient, video: boolean): Promise<void> {
  const info: BundleInfo = { ...inference.bundle.info, max_batch: options.maxBatch, animations: ANIMATION_FORMATS.filter((f) => f !== 'mp4' || video) };
  await options.redis.set(bundleInfoKey(options.prefix), JSON.stringify(info));
}

export async function startWorkerService(options: WorkerServiceOptions): Promise<WorkerService> {
  const log = options.log ?? (() => {});
  const { redis, prefix, queueName } = options;
  const inference = await startInference({
    modelDir: options.modelDir,
    executionProvider: options.executionProvider,
    intraOpThreads: options.intraOpThreads,
    maxBatch: options.maxBatch,
    heapMb: options.heapMb,
    graphCacheDir: options.graphCacheDir,
    memoryMb: options.memoryMb,
  });
  const { load, memory } = inference.startup;
  log('bundle_loaded', { bundle: inference.bundle.name, dir: inference.bundle.dir, load, memory });
  // The memory formula bounds the rows of a U-Net call (inference-thread.ts); say when the
  // settings ask for more than it allows.
  if (memory.max_rows !== null) {
    const images = Math.floor(memory.max_rows / 2);
    if ((options.batchJobs ?? 1) > images) log('memory_bounds_batching', { DIFFID_BATCH_JOBS: options.batchJobs, jobs_of_one_image_batched: images, memory });
    if (options.maxBatch > images) log('memory_bounds_max_batch', { DIFFID_MAX_BATCH: options.maxBatch, fits: images, memory, fix: `set DIFFID_MAX_BATCH=${images} on every worker: a morph batches that many frames, and more may not fit` });
  }
  const video = ffmpegAvailable();
  await publishBundleInfo(options, inference, video);

  const name = options.name ?? `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  const lockDuration = options.lockDurationMs ?? 120_000;
  const stalledInterval = options.stalledIntervalMs ?? 5_000;
  const attempts = options.jobAttempts ?? 3;
  const metrics = options.metrics ?? createWorkerMetrics(() => inference.batchStats(), () => inference.gcStats());
  const admitted = admission(redis, prefix, queueName);
  const dropInputs = async (job: Job<JobPayload, JobResult>) => {
    await redis.del(...jobKeys(prefix, job.id as string).inputs(job.data)).catch(() => 0);
    await admitted.releaseInputs(job.id as string).catch(() => undefined);
  };
  // Webhook deliveries are queued here and sent by the API processes (services/api/src/webhook-dispatcher.ts).
  const webhooks = new Queue(webhookQueueName(queueName), { connection: redis, prefix });
  const ledger = batchLedger(redis, prefix, webhooks as unknown as DeliveryQueue);
  // A batch ends when its last job is recorded: a record lost to a Redis blip is tried again.
  const recordInBatch = async (job: Job<JobPayload, JobResult>, event: WebhookEvent) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await ledger.record(job.data, job.id as string, event);
      } catch (err) {
        if (attempt === 5) return log('batch_not_recorded', { id: job.id, event, err: (err as Error).message });
        await new Promise((resolve) => setTimeout(resolve, 1000 * attempt));
      }
    }
  };
  // A job's events go to its webhook and, for a job of a batch, to the batch's ledger.
  const announceEvent = (job: Job<JobPayload, JobResult>, event: WebhookEvent) =>
    Promise.all([
      announce(webhooks as unknown as DeliveryQueue, job.data, job.id as string, event).catch((err: Error) => log('webhook_not_queued', { id: job.id, event, err: err.message })),
      recordInBatch(job, event),
    ]);

  const c2pa = await c2paCredentials({ ...(options.c2pa ?? { dir: join(DEFAULT_SETTINGS.dataDir, 'c2pa') }), commonName: SERVICE_NAME });
  // Say plainly when nobody outside will trust the signatures.
  log('c2pa_signer', { subject: c2pa.subject, self_made: c2pa.selfSigned, ...(c2pa.selfSigned ? { note: 'a local CA no public C2PA validator trusts; set DIFFID_C2PA_KEY and DIFFID_C2PA_CERT for trusted signing' } : {}) });
  const runJob = createJobRunner({ redis, prefix, inference, resultTtlSeconds: options.resultTtlSeconds, video, admission: admitted, c2pa });
  const worker = new Worker<JobPayload, JobResult>(
    queueName,
    jobProcessor({ redis, prefix, resultTtlSeconds: options.resultTtlSeconds, name, metrics, runJob, announce: announceEvent, dropInputs, log }),
    {
      connection: redis,
      prefix,
      name,
      // Several jobs at once only when their steps are batched (thread/unet-batch.ts): otherwise
      // they would only take turns on the one inference thread.
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
    if (!job?.id) return;
    // A job that will not run again (its tries spent, or its workers lost too often) keeps no
    // uploads. A canceled job was announced as canceled by the API that canceled it.
    const canceled = isCanceled(parseFailure(err.message));
    void job.getState().then(
      async (state) => {
        if (state !== 'failed') return;
        await dropInputs(job);
        if (!canceled) await announceEvent(job, 'failed');
      },
      () => undefined,
    );
  });
  // Redis outages and lost locks surface here; without a listener an 'error' event would end the process.
  worker.on('error', (err) => log('worker_error', { err: err.message }));
  worker.on('lockRenewalFailed', (ids) => {
    for (const id of ids) {
      log('job_lock_lost', { id });
      worker.cancelJob(id, LOCK_LOST);
    }
  });
  const stopReaper = startReaper(redis, prefix, queueName, stalledInterval, log);

  const subscriber = redis.duplicate();
  subscriber.on('error', () => undefined); // reconnects on its own; the main connection logs outages
  await subscriber.subscribe(cancelChannel(prefix));
  subscriber.on('message', (_channel: string, jobId: string) => worker.cancelJob(jobId, 'canceled'));
  await worker.waitUntilReady();

  let closing: Promise<void> | undefined;
  return {
    inference,
    metrics,
    worker,
    // Once, however often it is asked (a second SIGTERM, a test that stops the worker early).
    close() {
      closing ??= (async () => {
        stopReaper();
        await worker.close();
        await webhooks.close();
        await subscriber.quit();
        await inference.close();
      })();
      return closing;
    },
  };
}
