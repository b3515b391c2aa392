// The worker process's main thread: loads the bundle on the inference thread, then takes jobs
// from BullMQ and hands each to its kind's handler. This is the one place that knows BullMQ:
// cancels from the API's Redis channel become BullMQ's own job cancel (the processor's
// AbortSignal), and handler errors become final (UnrecoverableError) or retryable failures.

import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  DiffIdError,
  bundleInfoKey,
  cancelChannel,
  formatFailure,
  jobKeys,
  type BundleInfo,
  type JobKind,
  type JobPayload,
  type JobResult,
} from '@diffid/shared';
import { assertHandlersComplete, createHandlers, type Handler, type HandlerTable } from './handlers.ts';
import { InferenceCanceled, startInference, type InferenceClient } from './inference-client.ts';
import type { ThreadOptions } from './inference-protocol.ts';

export interface WorkerServiceOptions extends ThreadOptions {
  redis: Redis;
  /** Key prefix shared with the API (BullMQ's and ours). */
  prefix: string;
  queueName: string;
  resultTtlSeconds: number;
  /** BullMQ lock duration; the lock is renewed at half of it. */
  lockDurationMs?: number;
  /** How often BullMQ looks for jobs whose lock lapsed (stalled). */
  stalledIntervalMs?: number;
  /** Replaces the handlers (tests); defaults to createHandlers over this service's Redis and thread. */
  handlers?: (deps: Parameters<typeof createHandlers>[0]) => HandlerTable;
  log?: (event: string, fields: Record<string, unknown>) => void;
}

export interface WorkerService {
  inference: InferenceClient;
  worker: Worker<JobPayload, JobResult>;
  close(): Promise<void>;
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
  });
  const deps = { redis: options.redis, prefix: options.prefix, inference, resultTtlSeconds: options.resultTtlSeconds };
  const handlers = (options.handlers ?? createHandlers)(deps);
  try {
    assertHandlersComplete(handlers);
  } catch (err) {
    await inference.close();
    throw err;
  }
  log('bundle_loaded', { bundle: inference.bundle.name, dir: inference.bundle.dir });
  // The API fills omitted request settings from the bundle's defaults and plans step totals with max_batch.
  const info: BundleInfo = { ...inference.bundle.info, max_batch: options.maxBatch };
  await options.redis.set(bundleInfoKey(options.prefix), JSON.stringify(info));

  const worker = new Worker<JobPayload, JobResult>(
    options.queueName,
    // Three parameters: BullMQ passes the AbortSignal only to processors that declare it.
    async (job: Job<JobPayload, JobResult>, _token: string | undefined, signal: AbortSignal | undefined) => {
      const handler = handlers[job.data.kind] as Handler<JobKind> | undefined;
      if (!handler) throw new UnrecoverableError(formatFailure('DIFFID_ERR_INFERENCE_FAILED', `no handler for job kind "${job.data.kind}"`));
      const id = job.id as string;
      log('job_started', { id, kind: job.data.kind, attempt: job.attemptsMade + 1 });
      try {
        return await handler(job.data, {
          id,
          signal: signal ?? new AbortController().signal,
          progress: (p) => void job.updateProgress(p).catch(() => undefined),
        });
      } catch (err) {
        const final = finalFailure(err);
        if (!final) throw err;
        await options.redis.del(...jobKeys(options.prefix, id).inputs(job.data.kind)).catch(() => undefined);
        throw final;
      }
    },
    {
      connection: options.redis,
      prefix: options.prefix,
      concurrency: 1,
      lockDuration: options.lockDurationMs ?? 30_000,
      stalledInterval: options.stalledIntervalMs ?? 30_000,
      autorun: true,
    },
  );
  worker.on('completed', (job) => log('job_succeeded', { id: job.id, kind: job.data.kind, timings_ms: job.returnvalue?.timings_ms }));
  worker.on('failed', (job, err) => log('job_failed', { id: job?.id, kind: job?.data.kind, reason: err.message }));

  const subscriber = options.redis.duplicate();
  await subscriber.subscribe(cancelChannel(options.prefix));
  subscriber.on('message', (_channel: string, jobId: string) => worker.cancelJob(jobId, 'canceled'));
  await worker.waitUntilReady();

  return {
    inference,
    worker,
    async close() {
      await worker.close();
      await subscriber.quit();
      await inference.close();
    },
  };
}
