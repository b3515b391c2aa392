// compare: the cosine similarity of the largest faces of two images under the bundle's embedder.
import { cosineSimilarity, type ComparedFace } from '@diffid/shared';
import type { InputImages, PipelineOutput } from '../inference-protocol.ts';
import type { StageContext, StepHook } from '../stages/context.ts';
import { embedFaces } from '../stages/embed-face.ts';
import { findFace } from '../stages/find-face.ts';

export async function compare(ctx: StageContext, images: InputImages<'compare'>, onStep: StepHook): Promise<PipelineOutput> {
  onStep();
  const found = [await findFace(ctx, images.image_a, 'image_a'), await findFace(ctx, images.image_b, 'image_b')];
  const [ea, eb] = (await embedFaces(ctx, found.map((f) => f.crop))) as [Float32Array, Float32Array];
  const round = (v: number) => Math.round(v * 10) / 10;
  return {
    images: [],
    facts: {
      similarity: cosineSimilarity(ea, eb),
      faces: found.map((f, i) => ({
        image: i === 0 ? 'image_a' : 'image_b',
        box: f.box.map(round) as ComparedFace['box'],
        score: f.score,
        faces: f.faces,
      })),
    },
  };
}
