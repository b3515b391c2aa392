// The Diff-ID adapter: identity and text embeddings → the U-Net's conditioning tokens (eqs. 5–15).
import { runRows } from '../runtime/graph-io.ts';
import type { StageContext } from './context.ts';

export interface AdapterInput {
  face: Float32Array;
  image: Float32Array;
  text: Float32Array;
}

export async function condition(ctx: StageContext, items: AdapterInput[]): Promise<Float32Array[]> {
  const { bundle } = ctx;
  const d = bundle.dims;
  const ports = bundle.ports.adapter;
  const [tokens] = await runRows(
    bundle.graphs.adapter,
    [
      { port: ports.inputs.face_embedding, rows: items.map((i) => i.face), rowDims: [d.faceEmbedding] },
      { port: ports.inputs.image_embedding, rows: items.map((i) => i.image), rowDims: [d.imageEmbedding] },
      { port: ports.inputs.text_embedding, rows: items.map((i) => i.text), rowDims: [d.textLength, d.textWidth] },
    ],
    [ports.outputs.conditioning],
  );
  return tokens as Float32Array[];
}

/** The unconditional identity of classifier-free guidance: zero face and image embeddings. */
export function zeroIdentity(ctx: StageContext, text: Float32Array): AdapterInput {
  return { face: new Float32Array(ctx.bundle.dims.faceEmbedding), image: new Float32Array(ctx.bundle.dims.imageEmbedding), text };
}
