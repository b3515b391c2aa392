// DDIM inversion (paper eq. 22): clean latents → z_T, each under its own conditioning, guidance 1.
import { ddimInverseStep, inversionStepAlphas, inversionTimesteps } from '@diffid/shared/diffusion';
import type { StageContext } from './context.ts';
import { predictNoise } from './predict-noise.ts';

export interface InvertOptions {
  /** Clean latents z_0, one per image; not modified. */
  latents: Float32Array[];
  /** Each image's own conditioning. */
  conditioning: Float32Array[];
  steps: number;
}

export async function invert(ctx: StageContext, { latents, conditioning, steps }: InvertOptions): Promise<Float32Array[]> {
  const { schedule } = ctx;
  const z = latents.map((l) => Float32Array.from(l));
  for (const t of inversionTimesteps(schedule.config, steps)) {
    ctx.onStep();
    const { alphaBarS, alphaBarT } = inversionStepAlphas(schedule, steps, t);
    // The model is evaluated at the target t on the latent still at level s (DDIMInverseScheduler).
    const eps = await predictNoise(ctx, z, conditioning, t);
    z.forEach((zi, i) => ddimInverseStep(zi, eps[i] as Float32Array, alphaBarS, alphaBarT, schedule.config.prediction_type, zi));
  }
  return z;
}
