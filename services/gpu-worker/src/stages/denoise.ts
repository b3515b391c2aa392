// DDIM sampling (paper eq. 25) with classifier-free guidance: both branches in one batched U-Net
// call per step, each image's guided noise combined on its own.
import { classifierFreeGuidance, ddimStep, samplingStepAlphas, samplingTimesteps } from '@diffid/shared';
import type { StageContext, StepHook } from './context.ts';
import { predictNoise } from './predict-noise.ts';

export interface DenoiseRequest {
  /** z_T per image; not modified. */
  latents: Float32Array[];
  conditioning: Float32Array[];
  /** Per image; needed when guidance > 1. */
  unconditional?: Float32Array[];
  guidanceScale: number;
  steps: number;
  onStep: StepHook;
}

export async function denoise(ctx: StageContext, req: DenoiseRequest): Promise<Float32Array[]> {
  const { schedule } = ctx;
  const prediction = schedule.config.prediction_type;
  const z = req.latents.map((l) => Float32Array.from(l));
  const guided = req.guidanceScale > 1;
  if (guided && req.unconditional?.length !== z.length) throw new Error('guidance > 1 needs one unconditional conditioning per image');
  const n = z.length;
  for (const t of samplingTimesteps(schedule.config, req.steps)) {
    req.onStep();
    const { alphaBarT, alphaBarPrev } = samplingStepAlphas(schedule, req.steps, t);
    if (guided) {
      const out = await predictNoise(ctx, [...z, ...z], [...(req.unconditional as Float32Array[]), ...req.conditioning], t);
      for (let i = 0; i < n; i++) {
        const eps = classifierFreeGuidance(out[i] as Float32Array, out[n + i] as Float32Array, req.guidanceScale);
        ddimStep(z[i] as Float32Array, eps, alphaBarT, alphaBarPrev, prediction, z[i]);
      }
    } else {
      const out = await predictNoise(ctx, z, req.conditioning, t);
      for (let i = 0; i < n; i++) ddimStep(z[i] as Float32Array, out[i] as Float32Array, alphaBarT, alphaBarPrev, prediction, z[i]);
    }
  }
  return z;
}
