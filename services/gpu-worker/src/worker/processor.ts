// The BullMQ processor: one job in, through the job runner, its result or failure out. It records
// the job's owner (for the reaper), announces its start, keeps its metrics and progress, and maps
// the runner's errors onto BullMQ: a DiffIdError (bad input, a cancel) is final, anything else is
// left to BullMQ's retries.
import { UnrecoverableError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { DiffIdError, ERROR_CATALOGUE, failureReason, jobKeys, type JobPayload, type JobResult, type WebhookEvent } from '@diffid/shared/contract';
import type { JobRunner } from './job-runner.ts';
import type { WorkerMetrics } from './metrics.ts';

/** The abort reason of a job whose lock this worker lost. */
export const LOCK_LOST = 'diffid:lock-lost';

/** Bad input and cancels are final; everything else is left to BullMQ's retries. */
export function finalFailure(err: unknown): UnrecoverableError | null {
  return err instanceof DiffIdError ? new UnrecoverableError(failureReason(err)) : null;
}

export interface ProcessorDeps {
  redis: Redis;
  prefix: string;
  resultTtlSeconds: number;
  /** This worker's name in Redis (the reaper matches it against live connections). */
  name: string;
  metrics: WorkerMetrics;
  runJob: JobRunner;
  announce(job: Job<JobPayload, JobResult>, event: WebhookEvent): Promise<unknown>;
  /** Deletes a job's uploads (once it will not run again). */
  dropInputs(job: Job<JobPayload, JobResult>): Promise<unknown>;
  log(event: string, fields: Record<string, unknown>): void;
}

/** The processor function for BullMQ's Worker. */
export function jobProcessor(deps: ProcessorDeps) {
  const { metrics } = deps;
  // Three parameters: BullMQ passes the AbortSignal only to processors that declare it.
  return async (job: Job<JobPayload, JobResult>, token: string | undefined, signal: AbortSignal | undefined): Promise<JobResult> => {
    const id = job.id as string;
    const kind = job.data.kind;
    deps.log('job_started', { id, kind, attempt: job.attemptsMade + 1, stalls: job.stalledCounter });
    await deps.redis.set(jobKeys(deps.prefix, id).owner, JSON.stringify({ worker: deps.name, token }), 'EX', deps.resultTtlSeconds);
    await deps.announce(job, 'start');
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
      const result = await deps.runJob(job.data, {
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
      ended(err instanceof DiffIdError ? err.code : ERROR_CATALOGUE.INFERENCE_FAILED.code);
      if (!final) throw err;
      await deps.dropInputs(job);
      throw final;
    }
  };
}
