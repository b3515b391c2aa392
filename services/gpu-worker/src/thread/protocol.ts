// Messages between the worker's main thread and its inference thread.
import type { BundleInfo } from '@diffid/shared/contract';
import type { InferenceJob, PipelineOutput } from '../pipelines/pipeline.ts';
import type { ExecutionProvider } from '@diffid/shared/settings';
import type { BundleDims } from '../runtime/bundle-signature.ts';
import type { LoadReport } from '../runtime/bundle-loader.ts';
import type { MemoryPlan } from '../runtime/memory-plan.ts';
import type { Rgb } from '../vision/pixels.ts';
import type { ImageProvenance } from '../stages/context.ts';

export interface ThreadOptions {
  modelDir: string;
  executionProvider: ExecutionProvider;
  intraOpThreads: number;
  /** Most images in one U-Net batch (morph frames are sampled in batches of this size). */
  maxBatch: number;
  /** Where V8 starts the thread's old-generation limit, in MB (DIFFID_INFERENCE_HEAP_MB; its default when absent). */
  heapMb?: number;
  /** onnxruntime's optimized-graph cache (DIFFID_GRAPH_CACHE_DIR, resolved); absent: none. */
  graphCacheDir?: string;
  /** DIFFID_MEMORY_MB; absent: what the device has (deviceMemoryMb). */
  memoryMb?: number;
}

export interface InferenceOutput extends PipelineOutput {
  /** Wall-clock milliseconds of the pipeline run. */
  inferenceMs: number;
  /** Of which, time with onnxruntime running a graph (onnxruntimeBusyMs). */
  onnxruntimeMs: number;
  /** Of which, per stage (StageClock). */
  stages: Record<string, number>;
  /** The job's planned steps (plannedSteps), all of them done. */
  total: number;
}

/**
 * Slots of a job's shared control block (Int32): the main thread sets CANCEL to 1 to stop the
 * job; the thread keeps STEP (U-Net steps done) and TOTAL (planned) there, and the main thread
 * reads them when it publishes progress — no message per step.
 */
export const CONTROL = { CANCEL: 0, STEP: 1, TOTAL: 2 } as const;
export const CONTROL_BYTES = 3 * Int32Array.BYTES_PER_ELEMENT;

/**
 * Slots of the thread's counters (BigInt64, shared, kept across thread restarts): U-Net calls made
 * and rows evaluated in them — rows ÷ calls is the mean batch (unet-batch.ts) — and the thread's
 * full garbage collections (mark-compacts) with their pauses in microseconds.
 */
export const THREAD_STATS = { CALLS: 0, ROWS: 1, FULL_GCS: 2, FULL_GC_MICROS: 3 } as const;
export const THREAD_STATS_BYTES = 4 * BigInt64Array.BYTES_PER_ELEMENT;

/** Main → thread: a job to run, with its shared control block. */
export type MainMessage = { type: 'run'; requestId: number; job: InferenceJob; control: SharedArrayBuffer };

/** Thread → main. */
export type ThreadMessage =
  | {
      type: 'ready';
      bundle: { name: string; dir: string; digest: string; dims: BundleDims; info: Omit<BundleInfo, 'max_batch'> };
      /** How loading went, and the memory formula at the bundle's size with the rows per U-Net call it allows. */
      load: LoadReport & { seconds: number };
      memory: MemoryPlan & { rows_per_call: number };
    }
  | { type: 'fatal'; code: string; message: string }
  /** An output image whose pixels are final, sent before the job ends (ImageHook). */
  | { type: 'image'; requestId: number; index: number; rgb: Rgb; provenance: ImageProvenance }
  | { type: 'done'; requestId: number; output: InferenceOutput }
  /** The job failed, cancellation included. */
  | { type: 'failed'; requestId: number; code: string; message: string };
