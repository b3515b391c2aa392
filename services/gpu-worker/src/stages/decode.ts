// Latents → RGB images through the VAE decoder: z / scaling_factor in, clamp(x/2 + 0.5) out.
import { signedToRgb, type Rgb } from '../pixels.ts';
import { runRows } from '../graph-io.ts';
import type { StageContext } from './context.ts';

export async function decodeLatents(ctx: StageContext, latents: Float32Array[]): Promise<Rgb[]> {
  const { bundle } = ctx;
  const m = bundle.manifest;
  const d = bundle.dims;
  const ports = bundle.ports.vae_decoder;
  const rows = latents.map((z) => {
    const scaled = new Float32Array(z.length);
    for (let i = 0; i < z.length; i++) scaled[i] = (z[i] as number) / m.latent.scaling_factor;
    return scaled;
  });
  const [pixels] = await runRows(bundle.graphs.vae_decoder, [{ port: ports.inputs.latent, rows, rowDims: [d.latentChannels, d.latentHeight, d.latentWidth] }], [
    ports.outputs.pixels,
  ]);
  return (pixels as Float32Array[]).map((p) => signedToRgb(p, m.image.width, m.image.height));
}
