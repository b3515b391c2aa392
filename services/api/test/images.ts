// Synthetic upload images: a face-like pattern (skin-toned disc, darker eyes and mouth) whose
// colours depend on a seed, so that different seeds are different "people".
import { encodeImage, type ImageFormat } from '@diffid/shared/image';

export function facePattern(seed: number, width = 160, height = 160): { data: Uint8Array; width: number; height: number } {
  const data = new Uint8Array(width * height * 3);
  const tone = [180 + (seed * 37) % 60, 130 + (seed * 53) % 60, 100 + (seed * 71) % 60];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const u = (x / width - 0.5) * 2;
      const v = (y / height - 0.5) * 2;
      const inFace = u * u / 0.5 + v * v / 0.75 < 1;
      const eye = (Math.hypot(u + 0.3, v + 0.2) < 0.1 || Math.hypot(u - 0.3, v + 0.2) < 0.1) && inFace;
      const mouth = Math.abs(v - 0.4) < 0.05 && Math.abs(u) < 0.25 + 0.05 * (seed % 3);
      for (let c = 0; c < 3; c++) {
        const base = inFace ? (tone[c] as number) : 40 + ((x + y + seed * 13) % 50);
        data[(y * width + x) * 3 + c] = eye || mouth ? 30 + 10 * c : base;
      }
    }
  }
  return { data, width, height };
}

export async function faceFile(seed: number, format: ImageFormat = 'jpeg'): Promise<Buffer> {
  return encodeImage(facePattern(seed), format);
}
