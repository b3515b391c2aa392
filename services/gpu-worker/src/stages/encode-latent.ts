// Images → VAE latents: the image's centred square at the bundle's size, pixels as 2x − 1,
// the posterior mean where the graph exposes it (mean‖logvar), times the scaling factor.
import { rgbToSigned, squarePortrait, type Rgb } from '../vision/pixels.ts';
import { runRows } from '../runtime/graph-io.ts';
import type { StageContext } from './context.ts';

export async function encodeLatents(ctx: StageContext, images: Rgb[]): Promise<Float32Array[]> {
  const { bundle } = ctx;
  const m = bundle.manifest;
  if (m.image.width !== m.image.height) throw new Error('non-square bundles are not supported by encodeLatents');
  const ports = bundle.ports.vae_encoder;
  const rows = images.map((img) => rgbToSigned(squarePortrait(img, m.image.width)));
  const [raw] = await runRows(bundle.graphs.vae_encoder, [{ port: ports.inputs.pixels, rows, rowDims: [3, m.image.height, m.image.width] }], [ports.outputs.latent]);
  const size = m.latent.channels * bundle.dims.latentHeight * bundle.dims.latentWidth;
  // mean‖logvar: the first C channels are the mean, so the first `size` values of each row.
  // Scaled in float32, as diffusers multiplies its float32 latents (a Float32Array store rounds).
  const factor = Math.fround(m.latent.scaling_factor);
  return (raw as Float32Array[]).map((r) => {
    const mean = r.subarray(0, size);
    const out = new Float32Array(size);
    for (let i = 0; i < size; i++) out[i] = (mean[i] as number) * factor;
    return out;
  });
}
