// What every stage receives: the loaded bundle, its noise schedule, the job's stage clock, the
// U-Net batch that the thread's jobs denoise in, and where a finished image goes early.
import { makeSchedule, type ImageFacts, type NoiseSchedule } from '@diffid/shared';
import type { LoadedBundle } from '../bundle-loader.ts';
import type { Rgb } from '../pixels.ts';
import { unetBatch, type UnetBatch } from './unet-batch.ts';

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

/**
 * A context for one job: the bundle's, with a clock of its own, denoising in `batch` — the
 * thread's, shared by its jobs; by default one of its own (rows per call unbounded) — and
 * finished images told to `onImage` (by default nobody).
 */
export function stageContext(
  bundle: LoadedBundle,
  schedule = makeSchedule(bundle.manifest.scheduler),
  batch: UnetBatch = unetBatch(bundle, Number.POSITIVE_INFINITY),
  onImage: ImageHook = () => {},
): StageContext {
  return { bundle, schedule, clock: stageClock(), batch, onImage };
}
