// generate: photos of one person and a prompt → num_images new images of that identity. Several
// photos join into one identity: ArcFace embeddings by their mean direction, CLIP embeddings by
// their mean.
import { averageEmbedding, averageIdentity, scaleIdentity } from '@diffid/shared/diffusion';
import { imageSeeds, inputLabel } from '@diffid/shared/contract';
import type { Pipeline } from './pipeline.ts';
import { condition, zeroIdentity } from '../stages/condition.ts';
import { decodeLatents } from '../stages/decode.ts';
import { denoise } from '../stages/denoise.ts';
import { embedFaces } from '../stages/embed-face.ts';
import { embedImages } from '../stages/embed-image.ts';
import { encodePrompts } from '../stages/encode-prompt.ts';
import { findInputFaces, referenceImage } from '../stages/find-face.ts';
import { initialNoise } from '../stages/initial-noise.ts';
import { scoreIdentity } from '../stages/score-identity.ts';

export const generate: Pipeline<'generate'> = async (ctx, { images: { image: photos }, params }) => {
  const { clock } = ctx;
  const d = ctx.bundle.dims;
  const requests = photos.map((image, i) => ({ image, label: inputLabel('image', i, photos.length), faceIndex: params.face_index?.[i] }));
  const { used, inputs, warnings } = await clock.time('find_faces', () => findInputFaces(ctx, requests, params.on_missing_face));
  const eArc = averageIdentity(await clock.time('embed', () => embedFaces(ctx, used.map((u) => u.face.crop))));
  const eImage = averageEmbedding(await clock.time('embed', () => embedImages(ctx, used.map((u) => referenceImage(ctx, u.image, u.face)))));
  const text = await clock.time('encode_prompt', () => encodePrompts(ctx, [params.prompt, params.negative_prompt]));
  // The photo's identity with the prompt, the unconditional branch (the negative prompt, no
  // identity), and the prompt alone, which identity_scale mixes against and the steps outside
  // the identity's window see.
  const prompt = text.hidden[0] as Float32Array;
  const [withIdentity, uncond, promptAlone] = (await clock.time('condition', () =>
    condition(ctx, [{ face: eArc, image: eImage, text: prompt }, zeroIdentity(ctx, text.hidden[1] as Float32Array), zeroIdentity(ctx, prompt)]),
  )) as [Float32Array, Float32Array, Float32Array];
  const cond = scaleIdentity(promptAlone, withIdentity, params.identity_scale);
  const seeds = imageSeeds(params);
  const latents = await clock.time('denoise', () =>
    denoise(ctx, {
      latents: initialNoise(params, d),
      conditioning: seeds.map(() => cond),
      unconditional: seeds.map(() => uncond),
      window: { start: params.identity_start, end: params.identity_end, outside: seeds.map(() => promptAlone) },
      guidanceScale: params.guidance_scale,
      steps: params.steps,
    }),
  );
  const images = await clock.time('decode', () => decodeLatents(ctx, latents, (i, rgb) => ctx.onImage(i, rgb, { seed: seeds[i] as number })));
  const scores = await clock.time('score', () => scoreIdentity(ctx, images, [eArc]));
  return {
    images: images.map((rgb, i) => ({ rgb, facts: { seed: seeds[i] as number, arcface_similarity: scores[i]?.[0] ?? null } })),
    facts: { prompt_truncated: text.truncated[0] === true, inputs, warnings },
  };
};
