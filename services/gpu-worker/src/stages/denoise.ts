// DDIM sampling (paper eq. 25) with classifier-free guidance: both branches in one batched U-Net
// call per step. The sample batch and the U-Net's output live in a ddimSampler's memory (shared),
// which onnxruntime reads and writes in place and whose kernel applies guidance and the DDIM step
// in one pass: a step's host work is that pass, with no copies and no allocations.
import { ddimSampler, samplingTimesteps } from '@diffid/shared';
import type { StageContext, StepHook } from './context.ts';
import { unetRunner } from './predict-noise.ts';

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
  const d = ctx.bundle.dims;
  const size = d.latentChannels * d.latentHeight * d.latentWidth;
  const contextSize = d.conditioningTokens * d.conditioningWidth;
  const n = req.latents.length;
  const sampler = ctx.samplers.take({ images: n, latentSize: size, contextSize, guidanceScale: req.guidanceScale, prediction: schedule.config.prediction_type });
  try {
    const guided = sampler.rows > n;
    if (guided && req.unconditional?.length !== n) throw new Error('guidance > 1 needs one unconditional conditioning per image');
    // Rows [0, n) are the latents; with guidance rows [n, 2n) repeat them and the conditioning is
    // [unconditional; conditional] to match.
    const contexts = guided ? [...(req.unconditional as Float32Array[]), ...req.conditioning] : req.conditioning;
    if (contexts.length !== sampler.rows || contexts.some((c) => c.length !== contextSize) || req.latents.some((l) => l.length !== size)) {
      throw new Error(`denoise: expected ${n} latents of ${size} values and ${sampler.rows} conditioning rows of ${contextSize}`);
    }
    contexts.forEach((c, r) => sampler.context.set(c, r * contextSize));
    for (let r = 0; r < sampler.rows; r++) sampler.sample.set(req.latents[r % n] as Float32Array, r * size);
    const unet = unetRunner(ctx, sampler.rows, sampler.context);
    for (const t of samplingTimesteps(schedule.config, req.steps)) {
      req.onStep();
      await unet.run(sampler.sample, t, sampler.modelOutput);
      sampler.stepAt(schedule, req.steps, t);
    }
    return Array.from({ length: n }, (_, i) => sampler.latents.slice(i * size, (i + 1) * size));
  } finally {
    ctx.samplers.give(sampler);
  }
}
