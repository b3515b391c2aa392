// One handler per job kind. A handler reads the job's images from Redis, decodes them, runs the
// pipeline on the inference thread, encodes and stores the PNGs, and returns the result.

import { UnrecoverableError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  DiffIdError,
  INPUT_NAMES,
  JOB_KINDS,
  formatFailure,
  jobKeys,
  type JobKind,
  type JobProgress,
  type JobResult,
  type PayloadOf,
  type ResultImage,
} from '@diffid/shared';
import { decodeRgb, encodePng } from '@diffid/shared/image';
import { InferenceCanceled, type InferenceClient } from './inference-client.ts';
import type { InferenceJob, InferenceOutput } from './inference-protocol.ts';
import type { Rgb } from './pixels.ts';

export interface HandlerDeps {
  redis: Redis;
  prefix: string;
  inference: InferenceClient;
  resultTtlSeconds: number;
  /** Lets the cancel subscription reach the job while it runs. */
  onCancelable(jobId: string, cancel: (() => void) | null): void;
}

export type Handler<K extends JobKind> = (job: Job<PayloadOf<K>, JobResult>, deps: HandlerDeps) => Promise<JobResult>;
export type HandlerTable = { [K in JobKind]: Handler<K> };

/** Refuses a handler table that misses a job kind of the contract (the worker will not start). */
export function assertHandlersComplete(table: Partial<Record<string, unknown>>): void {
  const missing = Object.values(JOB_KINDS).filter((kind) => typeof table[kind] !== 'function');
  if (missing.length > 0) throw new Error(`the worker has no handler for job kind(s): ${missing.join(', ')}`);
}

/** Bad input and cancels are final; everything else is left to BullMQ's retries. */
function finalFailure(err: unknown): UnrecoverableError | null {
  if (err instanceof InferenceCanceled) return new UnrecoverableError(formatFailure('DIFFID_ERR_JOB_CANCELED', 'the job was canceled'));
  if (err instanceof DiffIdError) return new UnrecoverableError(formatFailure(err.code, err.message));
  return null;
}

async function loadInput(deps: HandlerDeps, jobId: string, name: string): Promise<Rgb> {
  const bytes = await deps.redis.getBuffer(jobKeys(deps.prefix, jobId).input(name));
  if (!bytes) throw new DiffIdError('INPUT_EXPIRED', `${name}: the uploaded image is no longer stored; submit the job again`);
  return decodeRgb(bytes, name);
}

/** The part both handlers share: run the pipeline with progress and cancellation, store PNGs. */
async function execute(
  job: Job,
  deps: HandlerDeps,
  build: () => Promise<InferenceJob>,
  describe: (output: InferenceOutput) => { images: Array<{ image: Rgb; meta: Omit<ResultImage, 'index' | 'width' | 'height'> }>; extra: Partial<JobResult> },
): Promise<JobResult> {
  const started = performance.now();
  const id = job.id as string;
  const keys = jobKeys(deps.prefix, id);
  try {
    if (await deps.redis.exists(keys.canceled)) throw new InferenceCanceled();
    const handle = deps.inference.run(await build(), (step, total) => {
      void job.updateProgress({ step, total } satisfies JobProgress);
    });
    deps.onCancelable(id, handle.cancel);
    // A cancel published before the subscription saw this job still lands here.
    if (await deps.redis.exists(keys.canceled)) handle.cancel();
    const output = await handle.result;
    const { images, extra } = describe(output);
    const pngs = await Promise.all(images.map((i) => encodePng(i.image)));
    const tx = deps.redis.multi();
    pngs.forEach((png, index) => tx.set(keys.result(index), png, 'EX', deps.resultTtlSeconds));
    tx.del(...INPUT_NAMES.map((n) => keys.input(n)));
    await tx.exec();
    await job.updateProgress({ step: output.total, total: output.total } satisfies JobProgress);
    return {
      images: images.map((i, index) => ({ index, width: i.image.width, height: i.image.height, ...i.meta })),
      ...extra,
      timings_ms: { total: Math.round(performance.now() - started), inference: Math.round(output.inferenceMs) },
    };
  } catch (err) {
    const final = finalFailure(err);
    if (!final) throw err;
    await deps.redis.del(...INPUT_NAMES.map((n) => keys.input(n)));
    throw final;
  } finally {
    deps.onCancelable(id, null);
  }
}

export const handleGenerate: Handler<'generate'> = (job, deps) =>
  execute(
    job,
    deps,
    async () => ({ kind: 'generate', params: job.data.params, image: await loadInput(deps, job.id as string, 'image') }),
    (output) => {
      if (output.kind !== 'generate') throw new Error('generate got another output');
      return {
        images: output.images.map((g) => ({ image: g.image, meta: { seed: g.seed, arcface_similarity: g.similarity } })),
        extra: { prompt_truncated: output.promptTruncated },
      };
    },
  );

export const handleMorph: Handler<'morph'> = (job, deps) =>
  execute(
    job,
    deps,
    async () => ({
      kind: 'morph',
      params: job.data.params,
      imageA: await loadInput(deps, job.id as string, 'image_a'),
      imageB: await loadInput(deps, job.id as string, 'image_b'),
    }),
    (output) => {
      if (output.kind !== 'morph') throw new Error('morph got another output');
      return {
        images: output.frames.map((f) => ({
          image: f.image,
          meta: { seed: job.data.params.seed, alpha: f.alpha, arcface_similarity_a: f.similarityA, arcface_similarity_b: f.similarityB },
        })),
        extra: { arcface_similarity_ab: output.similarityAB, prompt_truncated: output.promptTruncated },
      };
    },
  );

export const handleCompare: Handler<'compare'> = (job, deps) =>
  execute(
    job,
    deps,
    async () => ({
      kind: 'compare',
      imageA: await loadInput(deps, job.id as string, 'image_a'),
      imageB: await loadInput(deps, job.id as string, 'image_b'),
    }),
    (output) => {
      if (output.kind !== 'compare') throw new Error('compare got another output');
      return { images: [], extra: { similarity: output.similarity, faces: output.faces } };
    },
  );

/** The handler table: one entry per job kind, checked by the compiler and again at start-up. */
export const HANDLERS: HandlerTable = {
  generate: handleGenerate,
  morph: handleMorph,
  compare: handleCompare,
};
