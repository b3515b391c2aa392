// CLIP image embeddings of the reference images (e_i in the paper's eq. 5).
import { normalizeToChw, resizeShortestSideAndCrop, type Rgb } from '../vision/pixels.ts';
import { runRows } from '../runtime/graph-io.ts';
import type { StageContext } from './context.ts';

export async function embedImages(ctx: StageContext, images: Rgb[]): Promise<Float32Array[]> {
  const { bundle } = ctx;
  const pre = bundle.manifest.models.image_encoder.preprocess;
  const ports = bundle.ports.image_encoder;
  const rows = images.map((img) => normalizeToChw(resizeShortestSideAndCrop(img, pre.size), pre));
  const [embeddings] = await runRows(bundle.graphs.image_encoder, [{ port: ports.inputs.pixels, rows, rowDims: [3, pre.size, pre.size] }], [
    ports.outputs.embedding,
  ]);
  return embeddings as Float32Array[];
}
