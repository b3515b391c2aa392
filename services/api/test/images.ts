// Synthetic upload images, encoded.
import { encodeImage, type ImageFormat } from '@diffid/shared/image';
import { facePattern } from '@diffid/shared/testing';

export async function faceFile(seed: number, format: ImageFormat = 'jpeg'): Promise<Buffer> {
  return encodeImage(facePattern(seed), format);
}
