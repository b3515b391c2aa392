// The worker process's main thread: loads the bundle on the inference thread, then takes jobs
// from BullMQ and routes each to its kind's handler. Cancels arrive on a Redis channel.

import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { bundleInfoKey, cancelChannel, type JobKind, type JobPayload, type JobResult } from '@diffid/shared';
import { HANDLERS, assertHandlersComplete, type Handler, type HandlerDeps, type HandlerTable } from './handlers.ts';
import { startInference, type InferenceClient } from './inference-client.ts';
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
  handlers?: HandlerTable;
  log?: (event: string, fields: Record<string, unknown>) => void;
}

export interface WorkerService {
  inference: InferenceClient;
  worker: Worker<JobPayload, JobResult>;
  close(): Promise<void>;
}

export async function startWorkerService(options: WorkerServiceOptions): Promise<WorkerService> {
  const handlers = options.handlers ?? HANDLERS;
  assertHandlersComplete(handlers);
  const log = options.log ?? (() => {});
  const inference = await startInference({
    modelDir: options.modelDir,
    executionProvider: options.executionProvider,
    intraOpThreads: options.intraOpThreads,
    maxBatch: options.maxBatch,
  });
  log('bundle_loaded', { bundle: inference.bundle.name, dir: inference.bundle.dir });
  // The API fills omitted request settings from the bundle's recommended defaults.
  await options.redis.set(bundleInfoKey(options.prefix), JSON.stringify(inference.bundle.info));

  const cancels = new Map<string, () => void>();
  const subscriber = options.redis.duplicate();
  await subscriber.subscribe(cancelChannel(options.prefix));
  subscriber.on('message', (_channel: string, jobId: string) => cancels.get(jobId)?.());

  const deps: HandlerDeps = {
    redis: options.redis,
    prefix: options.prefix,
    inference,
    resultTtlSeconds: options.resultTtlSeconds,
    onCancelable: (jobId, cancel) => (cancel ? cancels.set(jobId, cancel) : cancels.delete(jobId)),
  };
  const worker = new Worker<JobPayload, JobResult>(
    options.queueName,
    async (job: Job<JobPayload, JobResult>) => {
      const handler = handlers[job.data.kind as JobKind] as Handler<JobKind> | undefined;
      if (!handler) throw new Error(`no handler for job kind "${job.data.kind}"`);
      log('job_started', { id: job.id, kind: job.data.kind, attempt: job.attemptsMade + 1 });
      return handler(job as Job<never, JobResult>, deps);
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
