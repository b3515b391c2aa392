// ArcFace similarity of generated images to reference faces: find, align and embed each output.
// An output in which the detector finds no face scores null.
import { cosineSimilarity } from '@diffid/shared/diffusion';
import type { Rgb } from '../vision/pixels.ts';
import type { StageContext } from './context.ts';
import { embedFaces } from './embed-face.ts';
import { largestFaceCrop } from './find-face.ts';

/** For each image, its cosine similarity to each reference embedding (null: no face found). */
export async function scoreIdentity(ctx: StageContext, images: Rgb[], references: Float32Array[]): Promise<Array<Array<number | null>>> {
  const faces = await Promise.all(images.map((img) => largestFaceCrop(ctx, img)));
  const found = faces.flatMap((f) => (f ? [f] : []));
  const embeddings = found.length > 0 ? await embedFaces(ctx, found) : [];
  let next = 0;
  return faces.map((f) => {
    if (!f) return references.map(() => null);
    const e = embeddings[next++] as Float32Array;
    return references.map((r) => cosineSimilarity(e, r));
  });
}
