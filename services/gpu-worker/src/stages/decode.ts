// Latents → RGB images through the VAE decoder: z / scaling_factor in, clamp(x/2 + 0.5) out. One
// image per call, as diffusers' "VAE slicing" decodes: the decoder's memory is one image's, and
// each image is final — `onImage` can send it on — while the next one is being decoded.
import { signedToRgb, type Rgb } from '../pixels.ts';
import { runRows } from '../graph-io.ts';
import type { StageContext } from './context.ts';

export async function decodeLatents(ctx: StageContext, latents: Float32Array[], onImage: (index: number, rgb: Rgb) => void = () => {}): Promise<Rgb[]> {
  const { bundle } = ctx;
  const m = bundle.manifest;
  const d = bundle.dims;
  const ports = bundle.ports.vae_decoder;
  const images: Rgb[] = [];
  for (const [index, z] of latents.entries()) {
    const scaled = new Float32Array(z.length);
    for (let i = 0; i < z.length; i++) scaled[i] = (z[i] as number) / m.latent.scaling_factor;
    const [pixels] = await runRows(bundle.graphs.vae_decoder, [{ port: ports.inputs.latent, rows: [scaled], rowDims: [d.latentChannels, d.latentHeight, d.latentWidth] }], [
      ports.outputs.pixels,
    ]);
    const rgb = signedToRgb((pixels as Float32Array[])[0] as Float32Array, m.image.width, m.image.height);
    onImage(index, rgb);
    images.push(rgb);
  }
  return images;
}
