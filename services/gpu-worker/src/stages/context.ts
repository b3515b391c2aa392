// What every stage receives: the loaded bundle, its noise schedule, the job's stage clock, the
// U-Net batch that the thread's jobs denoise in, the job's step hook and batch limit, and where a
// finished image goes early.
import { makeSchedule, type NoiseSchedule } from '@diffid/shared/diffusion';
import { type ImageFacts } from '@diffid/shared/contract';
import { DEFAULT_SETTINGS } from '@diffid/shared/settings';
import type { LoadedBundle } from '../runtime/bundle-loader.ts';
import type { Rgb } from '../vision/pixels.ts';
import { unetBatch, type UnetBatch } from '../runtime/unet-batch.ts';

/**
 * Wall time per pipeline stage. A stage that runs several times, even concurrently, counts the
 * union of its runs' intervals, so a stage's time never exceeds the time it was running.
 */
export interface StageClock {
  time<T>(stage: string, run: () => Promise<T>): Promise<T>;
  /** Milliseconds per stage so far. */
  totals(): Record<string, number>;
}

export function stageClock(): StageClock {
  const spans = new Map<string, Array<[number, number]>>();
  return {
    async time(stage, run) {
      const start = performance.now();
      try {
        return await run();
      } finally {
        const list = spans.get(stage) ?? [];
        list.push([start, performance.now()]);
        spans.set(stage, list);
      }
    },
    totals() {
      const out: Record<string, number> = {};
      for (const [stage, list] of spans) {
        let total = 0;
        let reach = -Infinity;
        for (const [a, b] of [...list].sort((x, y) => x[0] - y[0])) {
          if (b <= reach) continue;
          total += b - Math.max(a, reach);
          reach = b;
        }
        out[stage] = total;
      }
      return out;
    },
  };
}

export interface StageContext {
  bundle: LoadedBundle;
  schedule: NoiseSchedule;
  clock: StageClock;
  /** Where denoising runs: shared by the jobs of one thread (step-level batching, unet-batch.ts). */
  batch: UnetBatch;
  /** Told of each output image once its pixels are final, before it is scored (ImageHook). */
  onImage: ImageHook;
  /** Called before each U-Net evaluation of the job (StepHook). */
  onStep: StepHook;
  /** Most images in one U-Net batch (DIFFID_MAX_BATCH): a morph samples its frames in batches of this size. */
  maxBatch: number;
}

/** Called once per U-Net evaluation; throws to stop the job (cancellation). */
export type StepHook = () => void;

/** What is known of an output image before it is scored: enough for its PNG's provenance. */
export type ImageProvenance = Pick<ImageFacts, 'seed' | 'alpha'>;

/**
 * Called with output image `index` as soon as its pixels are final, so that the main thread
 * can encode its PNG while this thread goes on (scoring, the next batch of frames). The pipeline
 * still returns every image; this is only an early copy.
 */
export type ImageHook = (index: number, rgb: Rgb, provenance: ImageProvenance) => void;

/** What a job's context may set; each left out has its default (stageContext). */
export interface StageOptions {
  schedule?: NoiseSchedule;
  /** The thread's U-Net batch, shared by its jobs; by default one of the job's own (rows per call unbounded). */
  batch?: UnetBatch;
  /** By default nobody is told. */
  onImage?: ImageHook;
  /** By default nothing is counted and nothing stops the job. */
  onStep?: StepHook;
  /** By default 8, as DIFFID_MAX_BATCH. */
  maxBatch?: number;
}

/** A context for one job on `bundle`. */
export function stageContext(bundle: LoadedBundle, options: StageOptions = {}): StageContext {
  return {
    bundle,
    schedule: options.schedule ?? makeSchedule(bundle.manifest.scheduler),
    clock: stageClock(),
    batch: options.batch ?? unetBatch(bundle, Number.POSITIVE_INFINITY),
    onImage: options.onImage ?? (() => {}),
    onStep: options.onStep ?? (() => {}),
    maxBatch: options.maxBatch ?? DEFAULT_SETTINGS.maxBatch,
  };
}
