// Runs inside a worker_threads thread: loads the bundle and runs pipelines, so that
// onnxruntime's blocking session.run never stalls the main thread's event loop (BullMQ renews
// job locks there). Talks to the main thread only through messages and one shared cancel flag.

import { parentPort, workerData } from 'node:worker_threads';
import { DiffIdError } from '@diffid/shared';
import { loadBundle } from './bundle-loader.ts';
import type { InferenceJob, InferenceOutput, ThreadMessage, ThreadOptions, ThreadRequest } from './inference-protocol.ts';
import { compare } from './pipelines/compare.ts';
import { generate } from './pipelines/generate.ts';
import { morph, morphSteps } from './pipelines/morph.ts';
import { inferenceMs, stageContext, type StageContext } from './stages/context.ts';

const port = parentPort;
if (!port) throw new Error('inference-thread.ts runs as a worker thread only');
const options = (workerData as { options: ThreadOptions }).options;

/** Thrown from the step hook when the job's cancel flag is set. */
class Canceled extends Error {}

const post = (message: ThreadMessage, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

async function run(ctx: StageContext, job: InferenceJob, requestId: number, flag: Int32Array): Promise<InferenceOutput> {
  const total = job.kind === 'generate' ? job.params.steps : job.kind === 'morph' ? morphSteps(job.params, options.maxBatch) : 1;
  let begun = 0;
  const onStep = () => {
    if (Atomics.load(flag, 0) !== 0) throw new Canceled();
    post({ type: 'progress', requestId, step: begun, total });
    begun++;
  };
  const before = inferenceMs(ctx.bundle);
  if (job.kind === 'generate') {
    const out = await generate(ctx, job.image, job.params, onStep);
    return {
      kind: 'generate',
      images: out.images.map((g) => ({ image: g.image, seed: g.seed, similarity: g.similarity })),
      promptTruncated: out.promptTruncated,
      inferenceMs: inferenceMs(ctx.bundle) - before,
      total,
    };
  }
  if (job.kind === 'compare') {
    const out = await compare(ctx, job.imageA, job.imageB, onStep);
    return { kind: 'compare', ...out, inferenceMs: inferenceMs(ctx.bundle) - before, total };
  }
  const out = await morph(ctx, job.imageA, job.imageB, job.params, options.maxBatch, onStep);
  return {
    kind: 'morph',
    frames: out.frames,
    similarityAB: out.similarityAB,
    promptTruncated: out.promptTruncated,
    inferenceMs: inferenceMs(ctx.bundle) - before,
    total,
  };
}

try {
  const bundle = await loadBundle(options.modelDir, { executionProvider: options.executionProvider, intraOpThreads: options.intraOpThreads });
  const ctx = stageContext(bundle);
  const m = bundle.manifest;
  post({
    type: 'ready',
    bundle: {
      name: m.name,
      dir: bundle.dir,
      dims: bundle.dims,
      info: { name: m.name, architecture: m.adapter.architecture, image: m.image, defaults: m.defaults ?? {}, face_detector: Boolean(m.models.face_detector) },
    },
  });
  port.on('message', (request: ThreadRequest) => {
    const flag = new Int32Array(request.cancel);
    run(ctx, request.job, request.requestId, flag).then(
      (output) => {
        const images = output.kind === 'generate' ? output.images : output.kind === 'morph' ? output.frames : [];
        const buffers = images.map((f) => f.image.data.buffer as ArrayBuffer);
        post({ type: 'done', requestId: request.requestId, output }, buffers);
      },
      (err: unknown) => {
        if (err instanceof Canceled) return post({ type: 'canceled', requestId: request.requestId });
        const e = err instanceof DiffIdError ? err : new DiffIdError('INFERENCE_FAILED', (err as Error).message ?? String(err));
        post({ type: 'failed', requestId: request.requestId, code: e.code, message: e.message });
      },
    );
  });
} catch (err) {
  const e = err instanceof DiffIdError ? err : new DiffIdError('INFERENCE_FAILED', (err as Error).message ?? String(err));
  post({ type: 'fatal', code: e.code, message: e.message });
}
