// DDIM sampling (paper eq. 25) with classifier-free guidance: both branches in one batched U-Net
// call per step, in the thread's U-Net batch (unet-batch.ts), where jobs at any step share calls.
// The sample batch and the U-Net's output live in the batch's arena (shared/ddim-arena.ts), which
// onnxruntime reads and writes in place and whose kernel applies guidance and the DDIM step in one
// pass: a step's host work is that pass, with no copies and no allocations.
import { groupRows, samplingStepAlphas, samplingTimesteps } from '@diffid/shared/diffusion';
import type { StageContext } from './context.ts';

export interface DenoiseRequest {
  /** z_T per image; not modified. */
  latents: Float32Array[];
  conditioning: Float32Array[];
  /**
   * The identity's window (identity_start, identity_end: fractions of the steps): steps outside it
   * are conditioned on `outside` (per image: the prompt alone). Absent: every step on `conditioning`.
   */
  window?: { start: number; end: number; outside: Float32Array[] };
  /** Per image; needed when guidance > 1. */
  unconditional?: Float32Array[];
  guidanceScale: number;
  steps: number;
}

export async function denoise(ctx: StageContext, req: DenoiseRequest): Promise<Float32Array[]> {
  const { schedule } = ctx;
  const n = req.latents.length;
  const guided = groupRows(n, req.guidanceScale) > n;
  if (guided && req.unconditional?.length !== n) throw new Error('guidance > 1 needs one unconditional conditioning per image');
  const rows = (conditioning: Float32Array[]) => (guided ? [...(req.unconditional as Float32Array[]), ...conditioning] : conditioning);
  // Rows [0, n) are the latents; with guidance rows [n, 2n) repeat them and the conditioning is
  // [unconditional; conditional] to match.
  const member = await ctx.batch.join({
    latents: req.latents,
    contexts: rows(req.conditioning),
    guidanceScale: req.guidanceScale,
    prediction: schedule.config.prediction_type,
  });
  const window = req.window && (req.window.start > 0 || req.window.end < 1) ? req.window : null;
  let inside = true;
  try {
    for (const [k, t] of samplingTimesteps(schedule.config, req.steps).entries()) {
      ctx.onStep();
      // Step k of n is inside the window when k/n is in [start, end).
      const now = !window || (k >= window.start * req.steps && k < window.end * req.steps);
      if (window && now !== inside) member.recondition(rows(now ? req.conditioning : window.outside));
      inside = now;
      const { alphaBarT, alphaBarPrev } = samplingStepAlphas(schedule, req.steps, t);
      await member.step(t, alphaBarT, alphaBarPrev);
    }
    return member.latents();
  } finally {
    member.leave();
  }
}
