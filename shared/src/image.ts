// The only module that imports sharp. Everything else handles images as RGB bytes with their size.

import sharp from 'sharp';
import { DiffIdError } from './errors.ts';

/** Interleaved 8-bit RGB, row-major. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export type ImageFormat = 'jpeg' | 'png' | 'webp';

/** Upper bound on decoded pixels; larger uploads are refused before decoding. */
export const MAX_INPUT_PIXELS = 40_000_000;

/** The format the bytes say they are (magic numbers), whatever the client declared. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | null {
  const b = (i: number) => bytes[i];
  if (bytes.length >= 3 && b(0) === 0xff && b(1) === 0xd8 && b(2) === 0xff) return 'jpeg';
  if (bytes.length >= 8 && b(0) === 0x89 && b(1) === 0x50 && b(2) === 0x4e && b(3) === 0x47 && b(4) === 0x0d && b(5) === 0x0a && b(6) === 0x1a && b(7) === 0x0a) {
    return 'png';
  }
  const ascii = (from: number, to: number) => String.fromCharCode(...bytes.subarray(from, to));
  if (bytes.length >= 12 && ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'webp';
  return null;
}

/**
 * Decodes an uploaded image to RGB: EXIF orientation applied, alpha composited on black, any
 * colour space converted to sRGB. `label` names the upload in error messages.
 */
export async function decodeRgb(bytes: Uint8Array, label = 'image'): Promise<RgbImage> {
  const format = sniffImageFormat(bytes);
  if (!format) {
    throw new DiffIdError('UNSUPPORTED_IMAGE', `${label}: the file is not a JPEG, PNG or WebP image (its first bytes say otherwise)`);
  }
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error' })
      .rotate()
      .flatten({ background: { r: 0, g: 0, b: 0 } })
      .toColourspace('srgb')
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (err) {
    const message = (err as Error).message;
    if (/pixel limit/i.test(message)) {
      throw new DiffIdError('FILE_TOO_LARGE', `${label}: the image has more than ${MAX_INPUT_PIXELS} pixels`);
    }
    throw new DiffIdError('UNSUPPORTED_IMAGE', `${label}: the ${format.toUpperCase()} data cannot be decoded (${message})`);
  }
}

/** Encodes RGB as PNG; the same pixels always give the same bytes. */
export async function encodePng(image: RgbImage): Promise<Buffer> {
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .png({ compressionLevel: 6, adaptiveFiltering: false, palette: false })
    .toBuffer();
}

/**
 * Encodes RGB as JPEG, PNG or WebP (tests and examples use it to make uploads); `orientation`
 * writes that EXIF orientation tag without moving pixels, as cameras do.
 */
export async function encodeImage(image: RgbImage, format: ImageFormat, quality = 90, orientation?: number): Promise<Buffer> {
  let s = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
  if (orientation !== undefined) s = s.withMetadata({ orientation });
  if (format === 'jpeg') return s.jpeg({ quality }).toBuffer();
  if (format === 'webp') return s.webp({ quality }).toBuffer();
  return s.png().toBuffer();
}

/** Reads back the size and channel count of encoded image bytes. */
export async function imageInfo(bytes: Uint8Array): Promise<{ format: string; width: number; height: number; channels: number }> {
  const m = await sharp(bytes).metadata();
  return { format: m.format ?? 'unknown', width: m.width ?? 0, height: m.height ?? 0, channels: m.channels ?? 0 };
}
