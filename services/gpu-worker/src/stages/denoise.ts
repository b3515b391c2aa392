// DDIM sampling (paper eq. 25) with classifier-free guidance: both branches in one batched U-Net
// call per step. The loop's host work is one copy of the latents into the guidance half of the
// sample batch and one fused guidance + DDIM pass over them: the sample batch and the
// conditioning batch are made once, and the U-Net's output is read where onnxruntime put it.
import { ddimStep, guidedDdimStep, samplingStepAlphas, samplingTimesteps } from '@diffid/shared';
import type { StageContext, StepHook } from './context.ts';
import { concatRows } from '../graph-io.ts';
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
  const prediction = schedule.config.prediction_type;
  const size = d.latentChannels * d.latentHeight * d.latentWidth;
  const n = req.latents.length;
  const guided = req.guidanceScale > 1;
  if (guided && req.unconditional?.length !== n) throw new Error('guidance > 1 needs one unconditional conditioning per image');
  const contextSize = d.conditioningTokens * d.conditioningWidth;
  // Rows [0, n) are the latents z, updated in place; with guidance rows [n, 2n) repeat them, and
  // the conditioning is [unconditional; conditional] to match.
  const rows = guided ? 2 * n : n;
  const sample = new Float32Array(rows * size);
  req.latents.forEach((l, i) => sample.set(l, i * size));
  const context = concatRows(guided ? [...(req.unconditional as Float32Array[]), ...req.conditioning] : req.conditioning, contextSize);
  const unet = unetRunner(ctx, rows, context);
  const z = sample.subarray(0, n * size);
  for (const t of samplingTimesteps(schedule.config, req.steps)) {
    req.onStep();
    const { alphaBarT, alphaBarPrev } = samplingStepAlphas(schedule, req.steps, t);
    if (guided) sample.copyWithin(n * size, 0, n * size);
    const eps = await unet.run(sample, t);
    if (guided) guidedDdimStep(z, eps.subarray(0, n * size), eps.subarray(n * size, 2 * n * size), req.guidanceScale, alphaBarT, alphaBarPrev, prediction);
    else ddimStep(z, eps.subarray(0, n * size), alphaBarT, alphaBarPrev, prediction, z);
  }
  return Array.from({ length: n }, (_, i) => z.slice(i * size, (i + 1) * size));
}
