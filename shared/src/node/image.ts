// The only module that imports sharp. Everything else handles images as RGB bytes with their size.

import sharp, { type OverlayOptions } from 'sharp';
import { gifWithXmp, pngWithXmp } from './xmp-containers.ts';
import { DiffIdError } from '../contract/errors.ts';

/** Interleaved 8-bit RGB, row-major. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export type ImageFormat = 'jpeg' | 'png' | 'webp';

/** Upper bound on one upload's pixels; larger uploads are refused before decoding. */
export const MAX_INPUT_PIXELS = 40_000_000;
/** Upper bound on the pixels of all of one job's uploads together (two images at the limit). */
export const MAX_JOB_PIXELS = 2 * MAX_INPUT_PIXELS;
/**
 * The longest side the worker decodes an upload to. Detection letterboxes to a few hundred
 * pixels and alignment crops 112² and 256² canvases, so a face loses nothing at this size, and
 * one decoded photo holds at most 2048² × 3 bytes (12 MB) whatever was uploaded.
 */
export const WORKING_MAX_SIDE = 2048;
/**
 * The most one side of an upload may exceed the other. Beyond it an image is a strip, not a face
 * photo, and resizing its short side to a model's input (CLIP's 224) would blow up the long one.
 */
export const MAX_ASPECT_RATIO = 10;

/** Decoded pixels with how many upload pixels each stands for along a side (1: full size). */
export interface DecodedImage extends RgbImage {
  scale: number;
}

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

function formatOf(bytes: Uint8Array, label: string): ImageFormat {
  const format = sniffImageFormat(bytes);
  if (!format) throw new DiffIdError('UNSUPPORTED_IMAGE', `${label}: the file is not a JPEG, PNG or WebP image (its first bytes say otherwise)`);
  return format;
}

/** An upload over MAX_INPUT_PIXELS: its size when known, the limit, and what to do. */
function tooManyPixels(label: string, size?: { width: number; height: number }): DiffIdError {
  const megapixels = (n: number) => `${Math.round(n / 100_000) / 10} megapixels`;
  const its = size ? `${size.width}×${size.height} pixels (${megapixels(size.width * size.height)})` : 'more pixels than allowed';
  return new DiffIdError('FILE_TOO_LARGE', `${label}: the image is ${its}; the limit is ${megapixels(MAX_INPUT_PIXELS)}. Downscale it (a face needs far fewer: the service works at ${WORKING_MAX_SIDE} pixels on the long side)`);
}

function decodeError(err: unknown, label: string, format: ImageFormat): DiffIdError {
  const message = (err as Error).message;
  if (/pixel limit/i.test(message)) return tooManyPixels(label);
  return new DiffIdError('UNSUPPORTED_IMAGE', `${label}: the ${format.toUpperCase()} data cannot be decoded (${message})`);
}

// Sequential reads let libvips stream the decode row by row instead of holding the whole image.
const open = (bytes: Uint8Array) => sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error', sequentialRead: true });

/**
 * Decodes an uploaded image to RGB: EXIF orientation applied, alpha composited on black, any
 * colour space converted to sRGB, and — when a side is longer than `maxSide` — reduced to fit
 * (`scale` says by how much). `label` names the upload in error messages.
 */
export async function decodeRgb(bytes: Uint8Array, label = 'image', maxSide = Infinity): Promise<DecodedImage> {
  const format = formatOf(bytes, label);
  try {
    let pipeline = open(bytes).rotate();
    if (Number.isFinite(maxSide)) pipeline = pipeline.resize(maxSide, maxSide, { fit: 'inside', withoutEnlargement: true, kernel: 'lanczos3' });
    // The header's size and the pixels are read side by side, in two of sharp's threads (one after
    // the other cost a round trip more); the size's checks still decide before a decode error, and
    // limitInputPixels bounds the decode either way.
    const [size, decoded] = await Promise.allSettled([
      uprightSize(bytes),
      pipeline.flatten({ background: { r: 0, g: 0, b: 0 } }).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true }),
    ]);
    if (size.status === 'rejected') throw size.reason;
    const full = checkProportions(size.value, label);
    if (decoded.status === 'rejected') throw decoded.reason;
    const { data, info } = decoded.value;
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, scale: full.width / info.width };
  } catch (err) {
    throw err instanceof DiffIdError ? err : decodeError(err, label, format);
  }
}

/** The size, when its sides are within MAX_ASPECT_RATIO of each other. */
function checkProportions(size: { width: number; height: number }, label: string): { width: number; height: number } {
  const { width, height } = size;
  if (Math.max(width, height) > MAX_ASPECT_RATIO * Math.min(width, height)) {
    throw new DiffIdError('UNSUPPORTED_IMAGE', `${label}: ${width}×${height} pixels is more than ${MAX_ASPECT_RATIO} times as long one way as the other; crop the photo around the face`);
  }
  return size;
}

/** Width and height as the image is shown (EXIF orientations 5–8 swap them), from its header. */
async function uprightSize(bytes: Uint8Array): Promise<{ width: number; height: number }> {
  const m = await sharp(bytes).metadata();
  const swap = (m.orientation ?? 1) >= 5;
  return { width: (swap ? m.height : m.width) ?? 0, height: (swap ? m.width : m.height) ?? 0 };
}

/**
 * Checks an upload from its header alone — format, size as shown (after EXIF orientation),
 * pixel count and proportions — without decoding its pixels: the API takes uploads at this cost
 * and leaves decoding to the worker, which refuses data that does not decode in full (the job
 * then fails with UNSUPPORTED_IMAGE, naming the input).
 */
export async function checkImage(bytes: Uint8Array, label = 'image'): Promise<{ width: number; height: number }> {
  const format = formatOf(bytes, label);
  try {
    const size = checkProportions(await uprightSize(bytes), label);
    if (!(size.width > 0 && size.height > 0)) throw new Error('the header gives no size');
    if (size.width * size.height > MAX_INPUT_PIXELS) throw tooManyPixels(label, size);
    return size;
  } catch (err) {
    throw err instanceof DiffIdError ? err : decodeError(err, label, format);
  }
}

/**
 * Encodes RGB as PNG, with an XMP packet when given (in an uncompressed iTXt chunk, as the XMP
 * specification says; sharp would write a zTXt); the same pixels and packet give the same bytes.
 */
export async function encodePng(image: RgbImage, xmp?: string): Promise<Buffer> {
  const png = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).png({ compressionLevel: 6, adaptiveFiltering: false, palette: false }).toBuffer();
  return xmp === undefined ? png : pngWithXmp(png, xmp);
}

/** The frames an animation shows: forward, then for a boomerang back without repeating either end. */
export function playOrder<T>(frames: T[], boomerang: boolean): T[] {
  return boomerang && frames.length > 2 ? [...frames, ...frames.slice(1, -1).reverse()] : frames;
}

/** What encodeAnimation makes of a sequence of frames. */
export interface AnimationOptions {
  format: 'webp' | 'gif';
  fps: number;
  /** An XMP packet to carry (WebP's XMP chunk; GIF's XMP application extension). */
  xmp?: string;
  /** Plays forward, then back to the start (the first and last frames shown once each way). */
  boomerang?: boolean;
}

/**
 * Encodes equally sized RGB frames as a looping animated WebP or GIF; returns the file and how
 * many frames it shows. Sharp writes a stack of frames (one tall image, `pageHeight` per frame).
 */
export async function encodeAnimation(frames: RgbImage[], o: AnimationOptions): Promise<{ bytes: Buffer; frames: number }> {
  const first = frames[0];
  if (!first) throw new RangeError('an animation needs at least one frame');
  const shown = playOrder(frames, o.boomerang ?? false);
  const { width, height } = first;
  const frameBytes = width * height * 3;
  const stack = Buffer.alloc(frameBytes * shown.length);
  shown.forEach((f, i) => {
    if (f.width !== width || f.height !== height) throw new RangeError(`frame ${i} is ${f.width}×${f.height}, not ${width}×${height}`);
    stack.set(f.data, i * frameBytes);
  });
  const delay = Array.from({ length: shown.length }, () => Math.round(1000 / o.fps));
  let s = sharp(stack, { raw: { width, height: height * shown.length, channels: 3, pageHeight: height } });
  if (o.xmp !== undefined && o.format === 'webp') s = s.withXmp(o.xmp);
  // GIF at sharp's default effort spent 9.4 s on 46 photographic 256² frames; effort 1, keeping
  // pixels that changed by at most 8 levels from the frame before, took 2.3 s and 16 % fewer bytes.
  if (o.format === 'webp') return { bytes: await s.webp({ loop: 0, delay, quality: 85 }).toBuffer(), frames: shown.length };
  const gif = await s.gif({ loop: 0, delay, effort: 1, interFrameMaxError: 8 }).toBuffer();
  return { bytes: o.xmp === undefined ? gif : gifWithXmp(gif, o.xmp), frames: shown.length };
}

/** How encodeImage writes a file, for uploads of every kind people and attackers send. */
export interface EncodeOptions {
  quality?: number;
  /** Writes this EXIF orientation tag without moving pixels, as cameras do. */
  orientation?: number;
  progressive?: boolean;
  /** Stores the pixels as CMYK (JPEG), 16-bit RGB (PNG) or greyscale. */
  colourspace?: 'cmyk' | 'rgb16' | 'b-w';
  /** WebP: the image is a stack of frames this tall (an animation). */
  pageHeight?: number;
}

/** Encodes RGB as JPEG, PNG or WebP (tests and examples use it to make uploads). */
export async function encodeImage(image: RgbImage, format: ImageFormat, quality = 90, orientation?: number, options: EncodeOptions = {}): Promise<Buffer> {
  let s = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3, ...(options.pageHeight ? { pageHeight: options.pageHeight } : {}) } });
  if (orientation !== undefined) s = s.withMetadata({ orientation });
  if (options.colourspace) s = s.toColourspace(options.colourspace);
  if (format === 'jpeg') return s.jpeg({ quality, progressive: options.progressive ?? false }).toBuffer();
  if (format === 'webp') return s.webp({ quality }).toBuffer();
  return s.png({ progressive: options.progressive ?? false }).toBuffer();
}

/** The XMP packet an image carries, as text ('' when it has none). */
export async function imageXmp(bytes: Uint8Array): Promise<string> {
  return (await sharp(bytes).metadata()).xmp?.toString('utf8') ?? '';
}

/** Reads back the size and channel count of encoded image bytes. */
export async function imageInfo(bytes: Uint8Array): Promise<{ format: string; width: number; height: number; channels: number }> {
  const m = await sharp(bytes).metadata();
  return { format: m.format ?? 'unknown', width: m.width ?? 0, height: m.height ?? 0, channels: m.channels ?? 0 };
}

/** Reads back an animated file: its format, frame size, frame count and each frame's delay (ms). */
export async function animationInfo(bytes: Uint8Array): Promise<{ format: string; width: number; height: number; frames: number; delays: number[]; loop: number | undefined }> {
  const m = await sharp(bytes, { animated: true }).metadata();
  const frames = m.pages ?? 1;
  return { format: m.format ?? 'unknown', width: m.width ?? 0, height: m.pageHeight ?? m.height ?? 0, frames, delays: m.delay ?? [], loop: m.loop };
}

/** A figure of equally sized tiles in rows and columns, with the labels that say what each is. */
export interface GridFigure {
  /** tiles[row][column]; every row as long as `columns`. */
  tiles: RgbImage[][];
  /** A label per row, written left of it. */
  rows: string[];
  /** A heading per column, written above it. */
  columns: string[];
  /** A line under each tile, [row][column]. */
  captions: string[][];
}

/** Text made safe inside SVG or HTML. */
export const xmlText = (s: string) => s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * Draws a grid figure (a paper's comparison of methods: a row per method, a column per setting)
 * on white as one PNG: the labels and captions are SVG text, the tiles their own pixels.
 */
/** An SVG drawing (plots; text in DejaVu Sans) as a PNG on white. */
export async function encodeSvg(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg)).flatten({ background: '#ffffff' }).png().toBuffer();
}

export async function encodeGrid(figure: GridFigure): Promise<Buffer> {
  const first = figure.tiles[0]?.[0];
  if (!first) throw new RangeError('a grid needs at least one tile');
  const { width: w, height: h } = first;
  const cols = figure.columns.length;
  if (figure.tiles.length !== figure.rows.length || figure.tiles.some((r) => r.length !== cols)) throw new RangeError(`the grid has ${figure.rows.length} row labels and ${cols} column headings; every row needs that many tiles`);
  const gap = 8;
  const label = 150;
  const head = 28;
  const caption = 22;
  const width = label + cols * (w + gap);
  const height = head + figure.tiles.length * (h + caption + gap);
  const font = (size: number) => `font-family="DejaVu Sans, sans-serif" font-size="${size}" fill="#111"`;
  const texts: string[] = [];
  figure.columns.forEach((c, j) => texts.push(`<text x="${label + j * (w + gap) + w / 2}" y="${head - 9}" text-anchor="middle" ${font(15)}>${xmlText(c)}</text>`));
  figure.rows.forEach((r, i) => {
    const top = head + i * (h + caption + gap);
    texts.push(`<text x="8" y="${top + h / 2}" ${font(15)}>${xmlText(r)}</text>`);
    (figure.captions[i] ?? []).forEach((c, j) => texts.push(`<text x="${label + j * (w + gap) + w / 2}" y="${top + h + 16}" text-anchor="middle" ${font(13)}>${xmlText(c)}</text>`));
  });
  const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${texts.join('')}</svg>`);
  const layers: OverlayOptions[] = figure.tiles.flatMap((row, i) =>
    row.map((tile, j) => {
      if (tile.width !== w || tile.height !== h) throw new RangeError(`tile ${i},${j} is ${tile.width}×${tile.height}, not ${w}×${h}`);
      return { input: Buffer.from(tile.data.buffer, tile.data.byteOffset, tile.data.byteLength), raw: { width: w, height: h, channels: 3 as const }, left: label + j * (w + gap), top: head + i * (h + caption + gap) };
    }),
  );
  return sharp({ create: { width, height, channels: 3, background: '#ffffff' } })
    .composite([...layers, { input: svg, left: 0, top: 0 }])
    .png()
    .toBuffer();
}
