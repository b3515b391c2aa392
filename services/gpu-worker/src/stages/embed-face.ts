// ArcFace-style identity embeddings of aligned face crops (e_arc in the paper's eq. 5).
import { normalizeToChw, type Rgb } from '../vision/pixels.ts';
import { runRows } from '../runtime/graph-io.ts';
import type { StageContext } from './context.ts';

export async function embedFaces(ctx: StageContext, crops: Rgb[]): Promise<Float32Array[]> {
  const { bundle } = ctx;
  const pre = bundle.manifest.models.face_embedder.preprocess;
  const ports = bundle.ports.face_embedder;
  const [embeddings] = await runRows(
    bundle.graphs.face_embedder,
    [{ port: ports.inputs.pixels, rows: crops.map((c) => normalizeToChw(c, pre)), rowDims: [3, pre.size, pre.size] }],
    [ports.outputs.embedding],
  );
  return embeddings as Float32Array[];
}
