// A generate job's starting latents z_T: standard-normal noise, one generator per image seeded
// with that image's seed (imageSeeds). Pure, so that the worker's main thread can draw it while
// the inference thread finds and embeds the faces (inference-client.ts), and the pipeline itself
// when nobody did.
import { gaussianNoise } from '@diffid/shared/diffusion';
import { imageSeeds, type GenerateParams } from '@diffid/shared/contract';
import { latentValueCount } from '../runtime/bundle-signature.ts';

type LatentDims = Parameters<typeof latentValueCount>[0];

/** One latent of the bundle's size per image, in image order. */
export function initialNoise(params: Pick<GenerateParams, 'seed' | 'num_images'>, dims: LatentDims): Float32Array[] {
  const size = latentValueCount(dims);
  return imageSeeds(params).map((seed) => gaussianNoise(seed, size));
}

/** Whether `latents` are a job's initial noise by count and size (drawn elsewhere, checked here). */
export function fitsNoise(latents: Float32Array[], params: Pick<GenerateParams, 'num_images'>, dims: LatentDims): boolean {
  const size = latentValueCount(dims);
  return latents.length === params.num_images && latents.every((l) => l.length === size);
}
