// ArcFace similarity of generated images to reference faces: find, crop and embed each output.
import { cosineSimilarity } from '@diffid/shared';
import type { Rgb } from '../pixels.ts';
import type { StageContext } from './context.ts';
import { embedFaces } from './embed-face.ts';
import { findFace } from './find-face.ts';

/** For each image, its cosine similarity to each reference embedding. */
export async function scoreIdentity(ctx: StageContext, images: Rgb[], references: Float32Array[]): Promise<number[][]> {
  const crops = images.map((img, i) => findFace(ctx, img, `output ${i}`).crop);
  const embeddings = await embedFaces(ctx, crops);
  return embeddings.map((e) => references.map((r) => cosineSimilarity(e, r)));
}
