// compare: the cosine similarity of one face of each of two images under the bundle's embedder.
import { cosineSimilarity, type CompareParams } from '@diffid/shared';
import type { InputImages, PipelineOutput } from '../inference-protocol.ts';
import type { StageContext, StepHook } from '../stages/context.ts';
import { embedFaces } from '../stages/embed-face.ts';
import { findInputFaces } from '../stages/find-face.ts';

export async function compare(ctx: StageContext, images: InputImages<'compare'>, params: CompareParams, onStep: StepHook): Promise<PipelineOutput> {
  onStep();
  const { used, inputs, warnings } = await ctx.clock.time('find_faces', () =>
    findInputFaces(ctx, [
      { image: images.image_a, label: 'image_a', faceIndex: params.face_index_a },
      { image: images.image_b, label: 'image_b', faceIndex: params.face_index_b },
    ]),
  );
  const [ea, eb] = (await ctx.clock.time('embed', () => embedFaces(ctx, used.map((u) => u.face.crop)))) as [Float32Array, Float32Array];
  return { images: [], facts: { similarity: cosineSimilarity(ea, eb), inputs, warnings } };
}
