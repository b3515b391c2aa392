// Group photos made from the real portraits of ../shared/faces: each person's head and shoulders
// cut from their photo, scaled so the face is a given width, pasted onto a wide canvas, encoded
// as JPEG and decoded the way the worker decodes uploads (at most WORKING_MAX_SIDE on the long
// side). Nothing is written to disk; the photos stay outside the repository.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WORKING_MAX_SIDE, decodeRgb, encodeImage, type DecodedImage } from '@diffid/shared/image';
import { resizeRgb, type Rgb } from '../src/vision/pixels.ts';

/** ../shared/faces/photos beside the repository. */
export const PHOTOS = join(import.meta.dirname, '../../../../shared/faces/photos');
/** A skip reason when the photos are not there. */
export const photosAbsent = !existsSync(join(PHOTOS, 'fr_obama.jpg')) && `../shared/faces is absent (looked in ${PHOTOS}); group photos cannot be made`;

type Box = [number, number, number, number];

/**
 * One person: the photo and the face's box in it, in pixels of the photo decoded at
 * WORKING_MAX_SIDE, as the shipped detector finds it there: seven different people first, then two of them
 * again from another photo.
 */
export interface SourceFace {
  name: string;
  file: string;
  box: Box;
}

export const PEOPLE: SourceFace[] = [
  { name: 'obama', file: 'fr_obama.jpg', box: [361.4, 148.4, 624.7, 411.8] },
  { name: 'biden', file: 'fr_biden.jpg', box: [391.5, 247.1, 659.2, 514.8] },
  { name: 'luciano', file: 'max_Luciano.png', box: [133.6, 99.6, 269.9, 235.9] },
  { name: 'crew-left', file: 'nasa_apollo11_crew.jpg', box: [296.7, 424.4, 461.1, 588.8] },
  { name: 'crew-middle', file: 'nasa_apollo11_crew.jpg', box: [737.9, 143.6, 897.5, 303.2] },
  { name: 'crew-right', file: 'nasa_apollo11_crew.jpg', box: [1206.7, 440.6, 1370.1, 604.0] },
  { name: 'bryan', file: 'max_Bryan.png', box: [34.9, 33.4, 75.1, 73.7] },
  // The same two people as obama and biden, in another photo.
  { name: 'pair-left', file: 'fr_two_people.jpg', box: [230.1, 73.3, 388.7, 231.9] },
  { name: 'pair-right', file: 'fr_two_people.jpg', box: [788.9, 95.7, 946.2, 253.0] },
];

/** Where one face was pasted, in the canvas's pixels. */
export interface PastedFace {
  name: string;
  box: Box;
}

export interface GroupPhoto {
  /** The canvas as the worker decodes it (`scale` canvas pixels per decoded pixel). */
  image: DecodedImage;
  /** The JPEG bytes of the full-size canvas. */
  jpeg: Buffer;
  width: number;
  height: number;
  /** The faces, left to right, in canvas pixels. */
  faces: PastedFace[];
}

export interface GroupSpec {
  width: number;
  height: number;
  /** One face width (canvas pixels) per person, PEOPLE taken in order. */
  faceWidths: number[];
  /** Indices into PEOPLE to take instead (one per face width). */
  people?: number[];
  /** Varies the positions. */
  seed?: number;
}

const decodedCache = new Map<string, Promise<DecodedImage>>();
function source(file: string): Promise<DecodedImage> {
  let p = decodedCache.get(file);
  if (!p) {
    p = readFile(join(PHOTOS, file)).then((b) => decodeRgb(new Uint8Array(b), file, WORKING_MAX_SIDE));
    decodedCache.set(file, p);
  }
  return p;
}

function crop(img: Rgb, x0: number, y0: number, w: number, h: number): Rgb {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) data.set(img.data.subarray(((y0 + y) * img.width + x0) * 3, ((y0 + y) * img.width + x0 + w) * 3), y * w * 3);
  return { data, width: w, height: h };
}

/** A deterministic pseudo-random sequence in [0, 1). */
function random(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** A gradient with a little texture, so that the background is not one flat colour. */
function background(width: number, height: number, seed: number): Rgb {
  const data = new Uint8Array(width * height * 3);
  const rnd = random(seed);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const u = x / width;
      const v = y / height;
      const ripple = 10 * Math.sin(x / 37 + 3 * v) * Math.cos(y / 53);
      const noise = (rnd() - 0.5) * 12;
      const i = (y * width + x) * 3;
      data[i] = 80 + 90 * u + ripple + noise;
      data[i + 1] = 100 + 50 * v + ripple + noise;
      data[i + 2] = 140 - 40 * u + 30 * v + noise;
    }
  }
  return { data, width, height };
}

/**
 * A group photo of `faceWidths.length` people (PEOPLE in order), each face `faceWidths[i]` canvas
 * pixels wide, spread left to right in slots of equal width with jittered positions; every head
 * and shoulders is pasted whole, none overlapping another.
 */
export async function groupPhoto(spec: GroupSpec): Promise<GroupPhoto> {
  const { width, height, faceWidths } = spec;
  if (faceWidths.length > PEOPLE.length) throw new RangeError(`at most ${PEOPLE.length} people`);
  const canvas = background(width, height, spec.seed ?? 1);
  const rnd = random((spec.seed ?? 1) * 7919);
  const slot = width / faceWidths.length;
  const faces: PastedFace[] = [];
  for (const [i, faceWidth] of faceWidths.entries()) {
    const person = PEOPLE[spec.people?.[i] ?? i] as SourceFace;
    const img = await source(person.file);
    const [bx1, by1, bx2] = person.box;
    const w = bx2 - bx1;
    // Head and shoulders: 1.2 face widths either side of the face's centre, 0.6 above, 2.2 below its top.
    const x0 = Math.max(0, Math.round((bx1 + bx2) / 2 - 1.2 * w));
    const y0 = Math.max(0, Math.round(by1 - 0.6 * w));
    const x1 = Math.min(img.width, Math.round((bx1 + bx2) / 2 + 1.2 * w));
    const y1 = Math.min(img.height, Math.round(by1 + 2.2 * w));
    const k = faceWidth / w;
    const piece = resizeRgb(crop(img, x0, y0, x1 - x0, y1 - y0), Math.max(1, Math.round((x1 - x0) * k)), Math.max(1, Math.round((y1 - y0) * k)), 'bicubic');
    if (piece.width > slot || piece.height > height) throw new RangeError(`${person.name} at ${faceWidth} px does not fit a ${Math.round(slot)} px slot`);
    const left = Math.round(i * slot + rnd() * (slot - piece.width));
    const top = Math.round(rnd() * (height - piece.height));
    for (let y = 0; y < piece.height; y++) canvas.data.set(piece.data.subarray(y * piece.width * 3, (y + 1) * piece.width * 3), ((top + y) * width + left) * 3);
    const kx = piece.width / (x1 - x0);
    const ky = piece.height / (y1 - y0);
    const b = person.box;
    faces.push({ name: person.name, box: [left + (b[0] - x0) * kx, top + (b[1] - y0) * ky, left + (b[2] - x0) * kx, top + (b[3] - y0) * ky] });
  }
  const jpeg = await encodeImage(canvas, 'jpeg', 92);
  const image = await decodeRgb(jpeg, 'group', WORKING_MAX_SIDE);
  return { image, jpeg, width, height, faces };
}
