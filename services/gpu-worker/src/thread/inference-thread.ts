// Runs inside a worker_threads thread: loads the bundle and runs pipelines, so that
// onnxruntime's blocking session.run never stalls the main thread's event loop (BullMQ renews
// job locks there). Talks to the main thread through messages and one shared control block per
// job (cancel flag and step counter, inference-protocol.ts).

import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { DiffIdError, assertEveryKind, canceled, plannedSteps, type JobKind } from '@diffid/shared/contract';
import { compare } from '../pipelines/compare.ts';
import { generate } from '../pipelines/generate.ts';
import { identity } from '../pipelines/identity.ts';
import { morph } from '../pipelines/morph.ts';
import type { InferenceJob, Pipeline } from '../pipelines/pipeline.ts';
import { loadBundle, type LoadedBundle } from '../runtime/bundle-loader.ts';
import { deviceMemoryMb, memoryPlan } from '../runtime/memory-plan.ts';
import { onnxruntimeBusyMs } from '../runtime/onnx.ts';
import { unetBatch, type UnetBatch } from '../runtime/unet-batch.ts';
import { stageContext, type ImageHook } from '../stages/context.ts';
import { THREAD_STATS, CONTROL, type InferenceOutput, type ThreadMessage, type ThreadOptions, type MainMessage } from './protocol.ts';

const port = parentPort;
if (!port) throw new Error('inference-thread runs as a worker thread only');
const { options, threadStats } = workerData as { options: ThreadOptions; threadStats: SharedArrayBuffer };
const counters = new BigInt64Array(threadStats);

// Full collections pause this thread between graphs; counted for the worker's metrics. (A gc
// entry's `detail` says its kind; @types/node leaves it off PerformanceEntry.)
new PerformanceObserver((list) => {
  for (const entry of list.getEntries() as Array<PerformanceEntry & { detail?: { kind?: number } }>) {
    if (entry.detail?.kind !== constants.NODE_PERFORMANCE_GC_MAJOR) continue;
    Atomics.add(counters, THREAD_STATS.FULL_GCS, 1n);
    Atomics.add(counters, THREAD_STATS.FULL_GC_MICROS, BigInt(Math.round(entry.duration * 1000)));
  }
}).observe({ entryTypes: ['gc'] });

/** The pipeline of each job kind; the compiler and the check below both refuse a missing one. */
const PIPELINES: { [K in JobKind]: Pipeline<K> } = { generate, morph, compare, identity };
assertEveryKind(PIPELINES, 'the inference thread');

const post = (message: ThreadMessage, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

async function run(bundle: LoadedBundle, batch: UnetBatch, requestId: number, job: InferenceJob, control: Int32Array): Promise<InferenceOutput> {
  const total = plannedSteps(job.payload, options.maxBatch);
  Atomics.store(control, CONTROL.TOTAL, total);
  let begun = 0;
  // Called before each U-Net step: stop if canceled, else count the steps done so far.
  const onStep = () => {
    if (Atomics.load(control, CONTROL.CANCEL) !== 0) throw canceled();
    Atomics.store(control, CONTROL.STEP, begun);
    begun++;
  };
  // A copy goes out now (the pipeline still scores these pixels); the result transfers its own.
  const onImage: ImageHook = (index, rgb, provenance) => post({ type: 'image', requestId, index, rgb, provenance });
  const ctx = stageContext(bundle, { batch, onImage, onStep, maxBatch: options.maxBatch });
  const started = performance.now();
  const onnxBefore = onnxruntimeBusyMs();
  const pipeline = PIPELINES[job.payload.kind] as Pipeline<JobKind>;
  const output = await pipeline(ctx, { images: job.images, params: job.payload.params, ...(job.inverted ? { inverted: job.inverted } : {}) });
  return { ...output, inferenceMs: performance.now() - started, onnxruntimeMs: onnxruntimeBusyMs() - onnxBefore, stages: ctx.clock.totals(), total };
}

try {
  const loadStart = performance.now();
  const bundle = await loadBundle(options.modelDir, { executionProvider: options.executionProvider, intraOpThreads: options.intraOpThreads, graphCacheDir: options.graphCacheDir });
  const loadSeconds = (performance.now() - loadStart) / 1000;
  const m = bundle.manifest;
  const plan = memoryPlan({
    weightBytes: bundle.load.bytes,
    float16: bundle.ports.unet.inputs.sample.dtype === 'float16',
    executionProvider: options.executionProvider,
    imageSide: Math.max(m.image.width, m.image.height),
    budgetMb: options.memoryMb ?? deviceMemoryMb(options.executionProvider),
  });
  if (plan.max_rows !== null && plan.max_rows < 2) {
    await bundle.release();
    throw new DiffIdError(
      'BUNDLE_TOO_LARGE',
      `the bundle needs ${Math.ceil(plan.weights_mb + plan.fixed_mb + 2 * plan.row_mb)} MB for its weights and one guided image at ${m.image.width}×${m.image.height} (${Math.round(plan.weights_mb)} MB weights + ${Math.round(plan.fixed_mb)} MB + ${Math.round(plan.row_mb)} MB per U-Net row, docs/full-size.md); this worker has ${plan.budget_mb} MB (DIFFID_MEMORY_MB or the device's)`,
    );
  }
  // One U-Net batch for every job on this thread: a call carries at most twice DIFFID_MAX_BATCH
  // rows (both guidance branches of that many images), and no more than the memory holds.
  const rowsPerCall = Math.min(2 * options.maxBatch, plan.max_rows ?? Number.POSITIVE_INFINITY);
  const batch = unetBatch(bundle, rowsPerCall, (rows) => {
    Atomics.add(counters, THREAD_STATS.CALLS, 1n);
    Atomics.add(counters, THREAD_STATS.ROWS, BigInt(rows));
  });
  post({
    type: 'ready',
    load: { ...bundle.load, seconds: loadSeconds },
    memory: { ...plan, rows_per_call: rowsPerCall },
    bundle: {
      name: m.name,
      dir: bundle.dir,
      digest: bundle.digest,
      dims: bundle.dims,
      info: { name: m.name, architecture: m.adapter.architecture, image: m.image, defaults: m.defaults ?? {}, face_detector: Boolean(m.models.face_detector) },
    },
  });
  port.on('message', (request: MainMessage) => {
    run(bundle, batch, request.requestId, request.job, new Int32Array(request.control)).then(
      (output) => post({ type: 'done', requestId: request.requestId, output }, output.images.map((i) => i.rgb.data.buffer as ArrayBuffer)),
      (err: unknown) => {
        const e = err instanceof DiffIdError ? err : new DiffIdError('INFERENCE_FAILED', (err as Error).message ?? String(err));
        post({ type: 'failed', requestId: request.requestId, code: e.code, message: e.message });
      },
    );
  });
} catch (err) {
  const e = err instanceof DiffIdError ? err : new DiffIdError('INFERENCE_FAILED', (err as Error).message ?? String(err));
  post({ type: 'fatal', code: e.code, message: e.message });
}
