// Latents → RGB images through the VAE decoder: z / scaling_factor in, clamp(x/2 + 0.5) out. One
// image per call, as diffusers' "VAE slicing" decodes: the decoder's memory is one image's, and
// each image is final — `onImage` can send it on — while the next one is being decoded.
import { signedToRgb, type Rgb } from '../vision/pixels.ts';
import { runRows } from '../runtime/graph-io.ts';
import type { StageContext } from './context.ts';

export async function decodeLatents(ctx: StageContext, latents: Float32Array[], onImage: (index: number, rgb: Rgb) => void = () => {}): Promise<Rgb[]> {
  const { bundle } = ctx;
  const m = bundle.manifest;
  const d = bundle.dims;
  const ports = bundle.ports.vae_decoder;
  // Divided in float32, as diffusers divides its float32 latents (a Float32Array store rounds);
  // a factor of 1 (the demo bundle's) leaves them as they are.
  const factor = Math.fround(m.latent.scaling_factor);
  const images: Rgb[] = [];
  for (const [index, z] of latents.entries()) {
    const scaled = factor === 1 ? z : z.map((v) => v / factor);
    const [pixels] = await runRows(bundle.graphs.vae_decoder, [{ port: ports.inputs.latent, rows: [scaled], rowDims: [d.latentChannels, d.latentHeight, d.latentWidth] }], [
      ports.outputs.pixels,
    ]);
    const rgb = signedToRgb((pixels as Float32Array[])[0] as Float32Array, m.image.width, m.image.height);
    onImage(index, rgb);
    images.push(rgb);
  }
  return images;
}
