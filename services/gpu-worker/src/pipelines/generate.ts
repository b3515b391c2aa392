// generate: one face photo and a prompt → num_images new images of that identity.
import { gaussianNoise, type GenerateParams } from '@diffid/shared';
import type { InputImages, PipelineOutput } from '../inference-protocol.ts';
import { condition, zeroIdentity } from '../stages/condition.ts';
import type { StageContext, StepHook } from '../stages/context.ts';
import { decodeLatents } from '../stages/decode.ts';
import { denoise } from '../stages/denoise.ts';
import { embedFaces } from '../stages/embed-face.ts';
import { embedImages } from '../stages/embed-image.ts';
import { encodePrompts } from '../stages/encode-prompt.ts';
import { findFace, referenceImage } from '../stages/find-face.ts';
import { scoreIdentity } from '../stages/score-identity.ts';

export async function generate(ctx: StageContext, { image: input }: InputImages<'generate'>, params: GenerateParams, onStep: StepHook): Promise<PipelineOutput> {
  const d = ctx.bundle.dims;
  const face = await findFace(ctx, input, 'image');
  const [eArc] = await embedFaces(ctx, [face.crop]);
  const [eImage] = await embedImages(ctx, [referenceImage(ctx, input, face)]);
  const text = await encodePrompts(ctx, [params.prompt, params.negative_prompt]);
  const [cond, uncond] = await condition(ctx, [
    { face: eArc as Float32Array, image: eImage as Float32Array, text: text.hidden[0] as Float32Array },
    zeroIdentity(ctx, text.hidden[1] as Float32Array),
  ]);
  const seeds = Array.from({ length: params.num_images }, (_, i) => params.seed + i);
  const latents = await denoise(ctx, {
    latents: seeds.map((s) => gaussianNoise(s, d.latentChannels * d.latentHeight * d.latentWidth)),
    conditioning: seeds.map(() => cond as Float32Array),
    unconditional: seeds.map(() => uncond as Float32Array),
    guidanceScale: params.guidance_scale,
    steps: params.steps,
    onStep,
  });
  const images = await decodeLatents(ctx, latents);
  const scores = await scoreIdentity(ctx, images, [eArc as Float32Array]);
  return {
    images: images.map((rgb, i) => ({ rgb, facts: { seed: seeds[i] as number, arcface_similarity: scores[i]?.[0] ?? null } })),
    facts: { prompt_truncated: text.truncated[0] === true },
  };
}
