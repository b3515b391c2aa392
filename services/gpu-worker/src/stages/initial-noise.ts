// A generate job's starting latents z_T: standard-normal noise, one generator per image seeded
// with that image's seed (imageSeeds), so an image is reproducible from its own seed alone.
import { gaussianNoise } from '@diffid/shared/diffusion';
import { imageSeeds, type GenerateParams } from '@diffid/shared/contract';
import { latentValueCount } from '../runtime/bundle-signature.ts';

type LatentDims = Parameters<typeof latentValueCount>[0];

/** One latent of the bundle's size per image, in image order. */
export function initialNoise(params: Pick<GenerateParams, 'seed' | 'num_images'>, dims: LatentDims): Float32Array[] {
  const size = latentValueCount(dims);
  return imageSeeds(params).map((seed) => gaussianNoise(seed, size));
}
