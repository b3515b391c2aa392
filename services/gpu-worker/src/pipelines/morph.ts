// morph (paper §3.4, eqs. 22–24), by one of the paper's three strategies (its Fig. 8):
// `slerp` and `lerp` invert both faces once, then for each α mix the identity embeddings (SLERP,
// eq. 23, or linearly) and the inverted latents (LERP, eq. 24), condition, and sample with DDIM;
// `embedding_only` mixes the identity embeddings (SLERP) and samples every frame from the seed's
// noise, with no inversion. `structure_alpha` holds the latents' mix at one factor while the
// identity follows α. The CLIP image embeddings are mixed linearly whatever the strategy: they
// carry appearance — on the demo bundle they are the pixels themselves — and SLERP's
// coefficients sum to 1/cos(ω/2) > 1 mid-way, which scales that appearance (a colour cast).
// A side given as a stored identity may come with its z_T from an earlier morph under the same
// conditioning (worker/identity-cache.ts): it is not inverted again.
// identity_scale mixes each frame's conditioning against the prompt alone, and steps outside
// [identity_start, identity_end) see the prompt alone (generate.ts does the same).
// `even` pacing renders the frames twice: once at the factors asked for, to measure how much the
// picture changes between neighbours, then at factors re-spaced so every step changes it equally
// (shared/src/diffusion/pacing.ts). A background of `a` or `b` keeps that face's photo outside both faces.
import { averageIdentity, coefficientOfVariation, consecutiveDistances, cosineSimilarity, evenAlphas, gaussianNoise, lerp, scaleIdentity, slerp } from '@diffid/shared/diffusion';
import { faceMask } from '../vision/face-geometry.ts';
import type { InvertedLatents, Pipeline } from './pipeline.ts';
import { blendByMask, squarePortrait, type Rgb } from '../vision/pixels.ts';
import { condition, zeroIdentity } from '../stages/condition.ts';
import { decodeLatents } from '../stages/decode.ts';
import { denoise } from '../stages/denoise.ts';
import { embedFaces } from '../stages/embed-face.ts';
import { embedImages } from '../stages/embed-image.ts';
import { encodeLatents } from '../stages/encode-latent.ts';
import { encodePrompts } from '../stages/encode-prompt.ts';
import { eyesOnFrame, findInputFaces, referenceImage } from '../stages/find-face.ts';
import { invert } from '../stages/invert.ts';
import { scoreIdentity } from '../stages/score-identity.ts';
import { latentValueCount } from '../runtime/bundle-signature.ts';

/** One inversion run of both faces, then one sampling run per batch of at most ctx.maxBatch alphas (plannedSteps counts them). */
export const morph: Pipeline<'morph'> = async (ctx, { images, params, inverted: cached = {} }) => {
  const { clock, maxBatch } = ctx;
  const { used, inputs, warnings } = await clock.time('find_faces', () =>
    findInputFaces(ctx, [
      { image: images.image_a, label: 'image_a', faceIndex: params.face_index_a },
      { image: images.image_b, label: 'image_b', faceIndex: params.face_index_b },
    ]),
  );
  const references = used.map((u) => referenceImage(ctx, u.image, u.face));
  // Unit length, as generate's identities (averageIdentity): SLERP keeps it, LERP shortens it mid-way.
  const [arcA, arcB] = (await clock.time('embed', () => embedFaces(ctx, used.map((u) => u.face.crop)))).map((e) => averageIdentity([e])) as [Float32Array, Float32Array];
  const [clipA, clipB] = (await clock.time('embed', () => embedImages(ctx, references))) as [Float32Array, Float32Array];
  const text = await clock.time('encode_prompt', () => encodePrompts(ctx, [params.prompt]));
  const prompt = text.hidden[0] as Float32Array;
  const s = params.identity_scale;
  const window = { start: params.identity_start, end: params.identity_end };
  const [ownA, ownB, promptAlone] = (await clock.time('condition', () =>
    condition(ctx, [{ face: arcA, image: clipA, text: prompt }, { face: arcB, image: clipB, text: prompt }, zeroIdentity(ctx, prompt)]),
  )) as [Float32Array, Float32Array, Float32Array];
  // z_T of each face by DDIM inversion under its own conditioning at the asked strength (so that
  // α = 0 and 1 reconstruct the faces at it); embedding_only starts every frame from the seed's noise.
  // A side whose stored identity has its z_T for this conditioning (the runner's cache) is not
  // inverted again; the run of `steps` the plan counts is then counted through.
  let zA: Float32Array;
  let zB: Float32Array;
  const inverted: InvertedLatents = {};
  if (params.strategy === 'embedding_only') {
    zA = zB = gaussianNoise(params.seed, latentValueCount(ctx.bundle.dims));
  } else {
    const sides = (['image_a', 'image_b'] as const).map((side, i) => ({ side, reference: references[i] as Rgb, own: scaleIdentity(promptAlone, i === 0 ? ownA : ownB, s) }));
    const todo = sides.filter((x) => !cached[x.side]);
    if (todo.length > 0) {
      const latents = await clock.time('encode_latent', () => encodeLatents(ctx, todo.map((x) => x.reference)));
      const z = await clock.time('invert', () => invert(ctx, { latents, conditioning: todo.map((x) => x.own), steps: params.steps }));
      todo.forEach((x, i) => (inverted[x.side] = z[i] as Float32Array));
    } else {
      for (let k = 0; k < params.steps; k++) ctx.onStep();
    }
    zA = (cached.image_a ?? inverted.image_a) as Float32Array;
    zB = (cached.image_b ?? inverted.image_b) as Float32Array;
  }
  const mixIdentity = params.strategy === 'lerp' ? lerp : slerp;
  const mixStructure = (alpha: number) => lerp(zA, zB, params.structure_alpha ?? alpha);
  const size = ctx.bundle.manifest.image.width;
  const from = params.background;
  const background = from === 'morph' ? null : squarePortrait(references[from === 'a' ? 0 : 1] as Rgb, size);
  // Both faces' areas, so that a face moving between their places stays inside the mask.
  const mask = background
    ? maxOf(used.map((u, i) => faceMask(size, ctx.bundle.manifest.image.height, eyesOnFrame(ctx, references[i] as Rgb, u.face))))
    : null;
  // `final`: these are the frames returned, each told to ctx.onImage once it is decoded.
  const render = async (alphas: number[], final: boolean): Promise<Rgb[]> => {
    const out: Rgb[] = [];
    for (let start = 0; start < alphas.length; start += maxBatch) {
      const batch = alphas.slice(start, start + maxBatch);
      const mixed = await clock.time('condition', () =>
        condition(ctx, batch.map((alpha) => ({ face: mixIdentity(arcA, arcB, alpha), image: lerp(clipA, clipB, alpha), text: prompt }))),
      );
      const conditioning = mixed.map((c) => scaleIdentity(promptAlone, c, s));
      const latents = await clock.time('denoise', () =>
        denoise(ctx, { latents: batch.map(mixStructure), conditioning, window: { ...window, outside: batch.map(() => promptAlone) }, guidanceScale: 1, steps: params.steps }),
      );
      await clock.time('decode', () =>
        decodeLatents(ctx, latents, (j, decoded) => {
          const frame = background && mask ? blendByMask(decoded, background, mask) : decoded;
          if (final) ctx.onImage(start + j, frame, { seed: params.seed, alpha: batch[j] as number });
          out.push(frame);
        }),
      );
    }
    return out;
  };
  let alphas = params.alphas;
  let linearEvenness: number | undefined;
  if (params.pacing === 'even') {
    const distances = consecutiveDistances((await render(alphas, false)).map((f) => f.data));
    linearEvenness = coefficientOfVariation(distances);
    alphas = evenAlphas(alphas, distances);
  }
  const rendered = await render(alphas, true);
  const scores = await clock.time('score', () => scoreIdentity(ctx, rendered, [arcA, arcB]));
  const frames = rendered.map((rgb, i) => ({
    rgb,
    // Inversion is deterministic: the seed matters to embedding_only only, and is recorded either way.
    facts: { seed: params.seed, alpha: alphas[i] as number, arcface_similarity_a: scores[i]?.[0] ?? null, arcface_similarity_b: scores[i]?.[1] ?? null },
  }));
  return {
    images: frames,
    inverted,
    facts: {
      arcface_similarity_ab: cosineSimilarity(arcA, arcB),
      pacing_evenness: coefficientOfVariation(consecutiveDistances(rendered.map((f) => f.data))),
      ...(linearEvenness === undefined ? {} : { pacing_evenness_linear: linearEvenness }),
      prompt_truncated: text.truncated[0] === true,
      inputs,
      warnings,
    },
  };
};

/** The elementwise maximum of masks of one size. */
function maxOf(masks: Float32Array[]): Float32Array {
  const out = new Float32Array(masks[0]?.length ?? 0);
  for (const m of masks) for (let i = 0; i < out.length; i++) out[i] = Math.max(out[i] as number, m[i] as number);
  return out;
}
