// Job handlers: a job's payload and a small context in, its result out; they know nothing of
// BullMQ (worker-service.ts maps their errors and cancels onto it). Every kind runs the same way
// — read and decode its images, run its pipeline on the inference thread, store the PNGs — because
// every pipeline returns the same shape; the table still names a handler per kind.

import {
  DiffIdError,
  JOB_INPUTS,
  assertEveryKind,
  jobKeys,
  type JobKind,
  type JobProgress,
  type JobResult,
  type PayloadOf,
} from '@diffid/shared';
import { decodeRgb, encodePng } from '@diffid/shared/image';
import type { Redis } from 'ioredis';
import { InferenceCanceled, type InferenceClient } from './inference-client.ts';
import type { InferenceJob } from './inference-protocol.ts';
import type { Rgb } from './pixels.ts';

/** What a handler may know of the job it runs. */
export interface JobContext {
  id: string;
  /** Aborted when the job is canceled. */
  signal: AbortSignal;
  progress(progress: JobProgress): void;
}

export type Handler<K extends JobKind> = (payload: PayloadOf<K>, ctx: JobContext) => Promise<JobResult>;
export type HandlerTable = { [K in JobKind]: Handler<K> };

export interface HandlerDeps {
  redis: Redis;
  prefix: string;
  inference: Pick<InferenceClient, 'run'>;
  resultTtlSeconds: number;
}

/** Refuses a handler table that misses a job kind of the contract (the worker will not start). */
export function assertHandlersComplete(table: Partial<Record<string, unknown>>): void {
  assertEveryKind(table, 'the worker');
}

/** The job's uploaded images, decoded, by name; INPUT_EXPIRED names the first one gone. */
async function loadInputs(deps: HandlerDeps, id: string, kind: JobKind): Promise<Record<string, Rgb>> {
  const keys = jobKeys(deps.prefix, id);
  const images: Record<string, Rgb> = {};
  for (const name of JOB_INPUTS[kind]) {
    const bytes = await deps.redis.getBuffer(keys.input(name));
    if (!bytes) throw new DiffIdError('INPUT_EXPIRED', `${name}: the uploaded image is no longer stored; submit the job again`);
    images[name] = await decodeRgb(bytes, name);
  }
  return images;
}

/** The handler of every kind, over its dependencies. */
export function createHandlers(deps: HandlerDeps): HandlerTable {
  const run = async (payload: PayloadOf<JobKind>, ctx: JobContext): Promise<JobResult> => {
    const started = performance.now();
    const keys = jobKeys(deps.prefix, ctx.id);
    // A cancel that came before this worker held the job left only its tombstone.
    if (await deps.redis.exists(keys.canceled)) throw new InferenceCanceled();
    const images = await loadInputs(deps, ctx.id, payload.kind);
    const output = await deps.inference.run({ payload, images } as InferenceJob, {
      signal: ctx.signal,
      onProgress: (step, total) => ctx.progress({ step, total }),
    });
    const pngs = await Promise.all(output.images.map((i) => encodePng(i.rgb)));
    const tx = deps.redis.multi();
    pngs.forEach((png, index) => tx.set(keys.result(index), png, 'EX', deps.resultTtlSeconds));
    tx.del(...keys.inputs(payload.kind));
    await tx.exec();
    ctx.progress({ step: output.total, total: output.total });
    return {
      images: output.images.map((i, index) => ({ index, width: i.rgb.width, height: i.rgb.height, ...i.facts })),
      ...output.facts,
      timings_ms: { total: Math.round(performance.now() - started), inference: Math.round(output.inferenceMs) },
    };
  };
  return { generate: run, morph: run, compare: run };
}
