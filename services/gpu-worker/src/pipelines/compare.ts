// compare: the cosine similarity of one face of each of two images under the bundle's embedder.
import { cosineSimilarity } from '@diffid/shared/diffusion';
import type { Pipeline } from './pipeline.ts';
import { embedFaces } from '../stages/embed-face.ts';
import { findInputFaces } from '../stages/find-face.ts';

export const compare: Pipeline<'compare'> = async (ctx, { images, params }) => {
  ctx.onStep();
  const { used, inputs, warnings } = await ctx.clock.time('find_faces', () =>
    findInputFaces(ctx, [
      { image: images.image_a, label: 'image_a', faceIndex: params.face_index_a },
      { image: images.image_b, label: 'image_b', faceIndex: params.face_index_b },
    ]),
  );
  const [ea, eb] = (await ctx.clock.time('embed', () => embedFaces(ctx, used.map((u) => u.face.crop)))) as [Float32Array, Float32Array];
  return { images: [], facts: { similarity: cosineSimilarity(ea, eb), inputs, warnings } };
};
