import t from 'tap';
import { DiffIdError } from '@diffid/shared/contract';
import { decodeRgb, encodeImage, encodePng, imageInfo, sniffImageFormat } from '../src/node/image.ts';

// 4×2 image: left half red, right half blue.
const img = { width: 4, height: 2, data: Uint8Array.from({ length: 24 }, (_, i) => (Math.floor(i / 3) % 4 < 2 ? [255, 0, 0] : [0, 0, 255])[i % 3] as number) };

t.test('formats are told by their bytes', async (t) => {
  t.equal(sniffImageFormat(await encodeImage(img, 'jpeg')), 'jpeg');
  t.equal(sniffImageFormat(await encodeImage(img, 'png')), 'png');
  t.equal(sniffImageFormat(await encodeImage(img, 'webp')), 'webp');
  t.equal(sniffImageFormat(new TextEncoder().encode('GIF89a......')), null);
  t.equal(sniffImageFormat(new Uint8Array([0xff, 0xd8])), null, 'too short to be a JPEG');
});

t.test('PNG round trip is lossless and deterministic', async (t) => {
  const a = await encodePng(img);
  const b = await encodePng(img);
  t.ok(a.equals(b), 'same pixels, same bytes');
  const back = await decodeRgb(a);
  t.same([back.width, back.height], [4, 2]);
  t.same(Array.from(back.data), Array.from(img.data));
  t.same(await imageInfo(a), { format: 'png', width: 4, height: 2, channels: 3 });
});

t.test('EXIF orientation is applied on decode', async (t) => {
  // Orientation 6: the stored pixels must be turned 90° clockwise to display.
  const rotated = await decodeRgb(await encodeImage(img, 'png', 90, 6));
  t.same([rotated.width, rotated.height], [2, 4], 'width and height swap');
  t.same(Array.from(rotated.data.subarray(0, 3)), [255, 0, 0], 'red is now on top');
  t.same(Array.from(rotated.data.subarray(rotated.data.length - 3)), [0, 0, 255], 'blue at the bottom');
});

t.test('undecodable bytes are UNSUPPORTED_IMAGE naming the upload', async (t) => {
  const err = (await decodeRgb(new TextEncoder().encode('plain text'), 'image_a').catch((e: unknown) => e)) as DiffIdError;
  t.equal(err.code, 'DIFFID_ERR_UNSUPPORTED_IMAGE');
  t.match(err.message, /^image_a: the file is not a JPEG, PNG or WebP/);
  const jpeg = await encodeImage(img, 'jpeg');
  const cut = (await decodeRgb(jpeg.subarray(0, 40), 'image').catch((e: unknown) => e)) as DiffIdError;
  t.equal(cut.code, 'DIFFID_ERR_UNSUPPORTED_IMAGE');
  t.match(cut.message, /the JPEG data cannot be decoded/);
});

t.test('a strip more than 10 times as long as it is wide is refused by its size, by the worker too, even when its pixels do not decode', async (t) => {
  const strip = await encodeImage({ width: 30_000, height: 1, data: Uint8Array.from({ length: 30_000 * 3 }, (_, i) => (i * 37) & 255) }, 'png');
  const err = (await decodeRgb(strip, 'image_b', 2048).catch((e: unknown) => e)) as DiffIdError;
  t.ok(err instanceof DiffIdError);
  t.equal(err.code, 'DIFFID_ERR_UNSUPPORTED_IMAGE');
  t.match(err.message, /^image_b: 30000×1 pixels is more than 10 times as long one way as the other/);
  // The header (and its size) intact, the pixel data cut: the size's finding is the one reported.
  const cut = (await decodeRgb(strip.subarray(0, strip.length - 20), 'image_b', 2048).catch((e: unknown) => e)) as DiffIdError;
  t.match(cut.message, /^image_b: 30000×1 pixels is more than 10 times/);
  const ten = await decodeRgb(await encodeImage({ width: 100, height: 10, data: new Uint8Array(100 * 10 * 3) }, 'png'), 'image');
  t.same([ten.width, ten.height], [100, 10], '10:1 is still a photo');
});
