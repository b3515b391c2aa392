// morph (paper §3.4, eqs. 22–25): invert both faces once, then for each α interpolate the
// identity embeddings (SLERP by default, each embedding on its own sphere) and the inverted
// latents (LERP, eq. 24), condition, and sample with DDIM.
import { cosineSimilarity, lerp, slerp, type MorphParams } from '@diffid/shared';
import type { InputImages, PipelineOutput } from '../inference-protocol.ts';
import { condition } from '../stages/condition.ts';
import type { StageContext, StepHook } from '../stages/context.ts';
import { decodeLatents } from '../stages/decode.ts';
import { denoise } from '../stages/denoise.ts';
import { embedFaces } from '../stages/embed-face.ts';
import { embedImages } from '../stages/embed-image.ts';
import { encodeLatents } from '../stages/encode-latent.ts';
import { encodePrompts } from '../stages/encode-prompt.ts';
import { findFace, referenceImage, type FoundFace } from '../stages/find-face.ts';
import { invert } from '../stages/invert.ts';
import { scoreIdentity } from '../stages/score-identity.ts';

/** One inversion run of both faces, then one sampling run per batch of at most `maxBatch` alphas (plannedSteps counts them). */
export async function morph(ctx: StageContext, { image_a: a, image_b: b }: InputImages<'morph'>, params: MorphParams, maxBatch: number, onStep: StepHook): Promise<PipelineOutput> {
  const faces = [await findFace(ctx, a, 'image_a'), await findFace(ctx, b, 'image_b')];
  const [arcA, arcB] = (await embedFaces(ctx, faces.map((f) => f.crop))) as [Float32Array, Float32Array];
  const references = [referenceImage(ctx, a, faces[0] as FoundFace), referenceImage(ctx, b, faces[1] as FoundFace)];
  const [clipA, clipB] = (await embedImages(ctx, references)) as [Float32Array, Float32Array];
  const text = await encodePrompts(ctx, [params.prompt]);
  const prompt = text.hidden[0] as Float32Array;
  const ownConditioning = await condition(ctx, [
    { face: arcA, image: clipA, text: prompt },
    { face: arcB, image: clipB, text: prompt },
  ]);
  const [zA, zB] = (await invert(ctx, await encodeLatents(ctx, references), ownConditioning, params.steps, onStep)) as [Float32Array, Float32Array];
  const mix = params.interpolation === 'slerp' ? slerp : lerp;
  const frames: PipelineOutput['images'] = [];
  for (let start = 0; start < params.alphas.length; start += maxBatch) {
    const alphas = params.alphas.slice(start, start + maxBatch);
    const conditioning = await condition(ctx, alphas.map((alpha) => ({ face: mix(arcA, arcB, alpha), image: mix(clipA, clipB, alpha), text: prompt })));
    const latents = await denoise(ctx, {
      latents: alphas.map((alpha) => lerp(zA, zB, alpha)),
      conditioning,
      guidanceScale: 1,
      steps: params.steps,
      onStep,
    });
    const images = await decodeLatents(ctx, latents);
    const scores = await scoreIdentity(ctx, images, [arcA, arcB]);
    images.forEach((rgb, i) =>
      frames.push({
        rgb,
        // Morphing is deterministic; the seed is recorded only.
        facts: { seed: params.seed, alpha: alphas[i] as number, arcface_similarity_a: scores[i]?.[0] ?? null, arcface_similarity_b: scores[i]?.[1] ?? null },
      }),
    );
  }
  return { images: frames, facts: { arcface_similarity_ab: cosineSimilarity(arcA, arcB), prompt_truncated: text.truncated[0] === true } };
}
