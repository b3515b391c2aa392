// Messages between the worker's main thread and its inference thread.
import type { BundleInfo, ComparedFace, GenerateParams, MorphParams } from '@diffid/shared';
import type { BundleDims } from './bundle-signature.ts';
import type { ExecutionProvider } from './onnx.ts';
import type { Rgb } from './pixels.ts';

export interface ThreadOptions {
  modelDir: string;
  executionProvider: ExecutionProvider;
  intraOpThreads: number;
  /** Most images in one U-Net batch (morph frames are sampled in batches of this size). */
  maxBatch: number;
}

export type InferenceJob =
  | { kind: 'generate'; params: GenerateParams; image: Rgb }
  | { kind: 'morph'; params: MorphParams; imageA: Rgb; imageB: Rgb }
  | { kind: 'compare'; imageA: Rgb; imageB: Rgb };

export type InferenceOutput =
  | {
      kind: 'generate';
      images: Array<{ image: Rgb; seed: number; similarity: number | null }>;
      promptTruncated: boolean;
      inferenceMs: number;
      total: number;
    }
  | {
      kind: 'morph';
      frames: Array<{ image: Rgb; alpha: number; similarityA: number | null; similarityB: number | null }>;
      similarityAB: number;
      promptTruncated: boolean;
      inferenceMs: number;
      total: number;
    }
  | { kind: 'compare'; similarity: number; faces: ComparedFace[]; inferenceMs: number; total: number };

/** Main → thread. `cancel` holds one Int32 that the main thread sets to 1 to stop the job. */
export interface ThreadRequest {
  requestId: number;
  job: InferenceJob;
  cancel: SharedArrayBuffer;
}

/** Thread → main. */
export type ThreadMessage =
  | { type: 'ready'; bundle: { name: string; dir: string; dims: BundleDims; info: BundleInfo } }
  | { type: 'fatal'; code: string; message: string }
  | { type: 'progress'; requestId: number; step: number; total: number }
  | { type: 'done'; requestId: number; output: InferenceOutput }
  | { type: 'canceled'; requestId: number }
  | { type: 'failed'; requestId: number; code: string; message: string };
