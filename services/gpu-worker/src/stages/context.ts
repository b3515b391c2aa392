// What every stage receives: the loaded bundle, its noise schedule, and the step hook.
import { makeSchedule, type NoiseSchedule } from '@diffid/shared';
import type { LoadedBundle } from '../bundle-loader.ts';

export interface StageContext {
  bundle: LoadedBundle;
  schedule: NoiseSchedule;
}

/** Called once per U-Net evaluation; throws to stop the job (cancellation). */
export type StepHook = () => void;

export function stageContext(bundle: LoadedBundle): StageContext {
  return { bundle, schedule: makeSchedule(bundle.manifest.scheduler) };
}

/** Milliseconds spent in onnxruntime across the bundle's graphs so far. */
export function inferenceMs(bundle: LoadedBundle): number {
  return Object.values(bundle.graphs).reduce((ms, g) => ms + g.stats.ms, 0);
}
