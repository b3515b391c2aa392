// Where to look for faces a detector cannot see on the whole photo: a detector with a small
// square input (BlazeFace: 256²) sees a 2048-px photo letterboxed 8× smaller, and a face under
// about 16 input pixels — 128 px of the photo — is missed. Finer passes resize the photo so that
// the smallest face looked for reaches that size, and cut it into overlapping squares of the
// detector's input; the faces each square finds are mapped back to the photo's pixels and merged
// with those of the coarser passes. Pure geometry: the runtime (runtime/face-detector.ts) runs
// the graphs.
import type { DetectorLayout } from '@diffid/shared/bundle';
import type { DetectedFace } from './detect-faces.ts';
import type { Point } from './face-geometry.ts';
import type { Rgb } from './pixels.ts';

/**
 * The narrowest face (box width as BlazeFace draws it, about ear to ear; detector input pixels) a
 * detector of each layout finds every time. The seven people of ../shared/faces pasted at that
 * width, 3 positions each: the shipped BlazeFace found all 21 at 16 px (20 at 14 px, 19 at 12);
 * SCRFD-500M (../shared/faces/models, 640² input) all 21 at 20 px, 18 at 16, 12 at 12.
 */
export const DETECTABLE_FACE: Record<DetectorLayout, number> = { blazeface: 16, scrfd: 20 };
/** The narrowest face looked for, in the upload's pixels (the figure: 40 px). */
export const MIN_FACE_UPLOAD = 40;
/**
 * …but never under this many decoded pixels: a 4000-px upload is decoded at 2048 px, so its 40-px
 * faces are 20.5 px here, and smaller faces have eyes 8 px apart, nothing a recognizer can use.
 */
export const MIN_FACE_DECODED = 20;
/**
 * Most detector runs for one image, the whole-photo pass included. A 2048² decoded photo of a
 * ≥ 4096-px upload needs the most: 74 with a 256² input (1 + 9 + 64 tiles); a 2048×1152 one 47
 * (1 + 6 + 40), or 13 when it was uploaded at 2048 px. A plan over the bound looks for larger
 * faces until it fits.
 */
export const MAX_DETECTOR_RUNS = 80;
/**
 * Under this width (input pixels) a pass places landmarks coarsely: on group photos of the
 * ../shared/faces people, 45 faces the whole-photo pass saw 12–27 px wide had their eyes off by up
 * to 0.62 of the eye distance (median 0.086), the same faces from the finer passes by at most
 * 0.099 (median 0.052). Such a face is taken from the finer pass (mergePasses).
 */
export const SHARP_FACE = 2 * DETECTABLE_FACE.blazeface;
/** A face box whose edge comes this close (input pixels) to a tile's inner edge is taken as cut by it. */
export const EDGE_MARGIN = 4;
/** Box sizes of one face vary by about this much from scale to scale; tile overlaps allow for it. */
const SIZE_SLACK = 1.1;
/** A finer pass's face that has this share of its box inside a kept face's box is part of it. */
const CONTAINED = 0.5;

/** One square the detector runs on, at a level's scale. */
export interface Tile {
  /** Top-left corner in the level's pixels. */
  x: number;
  y: number;
  /** Which sides lie inside the photo (a face touching them may be cut); the others are its borders. */
  inner: { left: boolean; top: boolean; right: boolean; bottom: boolean };
}

/** One finer pass: the photo resized by `scale`, cut into overlapping tiles. */
export interface TileLevel {
  /** Level pixels per photo pixel (a level's exact scale is width / photo width and height / photo height). */
  scale: number;
  width: number;
  height: number;
  /** Input pixels shared by neighbouring tiles: at least `maxFace` and two edge margins. */
  overlap: number;
  /** The widest face (input pixels) this level is meant to find; coarser passes find wider ones. */
  maxFace: number;
  tiles: Tile[];
}

/** Every pass one image needs. */
export interface DetectionPlan {
  /** The narrowest face looked for, in the image's (decoded) pixels. */
  minFace: number;
  /** The narrowest face the whole-photo pass alone finds, in the image's pixels. */
  wholePhotoMinFace: number;
  /** Finer passes, coarse to fine; none when the whole-photo pass reaches `minFace`. */
  levels: TileLevel[];
  /** Detector runs in all, the whole-photo pass included. */
  runs: number;
}

export interface PlanOptions {
  /** Upload pixels per decoded pixel (the image's `scale`; 1 when it was not reduced). */
  uploadScale?: number;
  /** The narrowest face the detector finds every time (input pixels): BlazeFace's DETECTABLE_FACE unless given. */
  detectable?: number;
  /** MIN_FACE_UPLOAD unless given. */
  minFaceUpload?: number;
  /** MIN_FACE_DECODED unless given. */
  minFaceDecoded?: number;
  /** MAX_DETECTOR_RUNS unless given. */
  maxRuns?: number;
}

/**
 * Left (or top) edges of the fewest `size`-long tiles that cover `length` with neighbours sharing
 * at least `overlap`, spread evenly; a length under one tile has one tile (padded beyond it).
 */
export function tileOrigins(length: number, size: number, overlap: number): number[] {
  if (length <= size) return [0];
  if (overlap >= size) throw new RangeError(`tile overlap ${overlap} must be under the tile size ${size}`);
  const n = Math.ceil((length - overlap) / (size - overlap));
  if (n <= 1) return [0];
  // Floored steps: rounding can only make an overlap larger.
  return Array.from({ length: n }, (_, i) => (i === n - 1 ? length - size : Math.floor((i * (length - size)) / (n - 1))));
}

function level(img: { width: number; height: number }, size: number, scale: number, maxFace: number): TileLevel {
  const width = Math.max(1, Math.round(img.width * scale));
  const height = Math.max(1, Math.round(img.height * scale));
  const overlap = Math.ceil(maxFace) + 2 * EDGE_MARGIN + 1;
  const xs = tileOrigins(width, size, overlap);
  const ys = tileOrigins(height, size, overlap);
  const tiles: Tile[] = [];
  for (const y of ys) {
    for (const x of xs) tiles.push({ x, y, inner: { left: x > 0, top: y > 0, right: x + size < width, bottom: y + size < height } });
  }
  return { scale, width, height, overlap, maxFace, tiles };
}

/**
 * The passes that find every face down to `minFace` decoded pixels — MIN_FACE_UPLOAD upload
 * pixels, never under MIN_FACE_DECODED — with a detector of `size`² input that finds faces of
 * `detectable` input pixels: the whole photo letterboxed, then as few levels as cost the fewest
 * runs (one, two or three), their scales spaced evenly (geometrically) from the whole photo's up to
 * detectable / minFace. A level finds faces from `detectable` up to what the next coarser pass no
 * longer misses (`detectable` × the scale step), and its tiles overlap by more than that, so such
 * a face lies whole in some tile. When a plan needs more than `maxRuns`, larger faces are looked
 * for (10 % at a time) until it does not.
 */
export function planDetection(img: { width: number; height: number }, size: number, options: PlanOptions = {}): DetectionPlan {
  const detectable = options.detectable ?? DETECTABLE_FACE.blazeface;
  const maxRuns = options.maxRuns ?? MAX_DETECTOR_RUNS;
  const whole = size / Math.max(img.width, img.height);
  let minFace = Math.max(options.minFaceDecoded ?? MIN_FACE_DECODED, (options.minFaceUpload ?? MIN_FACE_UPLOAD) / (options.uploadScale ?? 1));
  for (;;) {
    const finest = detectable / minFace;
    let best: TileLevel[] = [];
    let runs = 1;
    if (finest > whole) {
      runs = Infinity;
      for (let k = 1; k <= 3; k++) {
        const step = (finest / whole) ** (1 / k);
        const maxFace = detectable * step * SIZE_SLACK;
        if (maxFace + 2 * EDGE_MARGIN + 1 >= size / 2) continue;
        const levels = Array.from({ length: k }, (_, i) => level(img, size, i === k - 1 ? finest : whole * step ** (i + 1), maxFace));
        const n = 1 + levels.reduce((s, l) => s + l.tiles.length, 0);
        if (n < runs) {
          runs = n;
          best = levels;
        }
      }
    }
    if (runs <= maxRuns || maxRuns < 1) return { minFace, wholePhotoMinFace: detectable / whole, levels: best, runs };
    minFace *= 1.1;
  }
}

/**
 * A tile of a level's pixels as the detector's `size`² input: the level's pixels where the tile
 * lies on it, black beyond (as the letterbox pads).
 */
export function tileCanvas(levelImage: Rgb, tile: Pick<Tile, 'x' | 'y'>, size: number): Rgb {
  const data = new Uint8Array(size * size * 3);
  const w = Math.min(size, levelImage.width - tile.x);
  const h = Math.min(size, levelImage.height - tile.y);
  for (let y = 0; y < h; y++) {
    const from = ((tile.y + y) * levelImage.width + tile.x) * 3;
    data.set(levelImage.data.subarray(from, from + w * 3), y * size * 3);
  }
  return { data, width: size, height: size };
}

/**
 * Whether a face found on a tile (input pixels) reaches within EDGE_MARGIN of one of the tile's
 * inner sides, or past it: it may be cut there, and a neighbouring tile holds it whole.
 */
export function cutByTile(face: Pick<DetectedFace, 'box'>, tile: Pick<Tile, 'inner'>, size: number): boolean {
  const [x1, y1, x2, y2] = face.box;
  const { left, top, right, bottom } = tile.inner;
  return (left && x1 < EDGE_MARGIN) || (top && y1 < EDGE_MARGIN) || (right && x2 > size - EDGE_MARGIN) || (bottom && y2 > size - EDGE_MARGIN);
}

/** A face found on a tile of a level (input pixels), in the photo's pixels. */
export function faceFromTile(face: DetectedFace, tile: Pick<Tile, 'x' | 'y'>, lvl: Pick<TileLevel, 'width' | 'height'>, img: { width: number; height: number }): DetectedFace {
  const kx = img.width / lvl.width;
  const ky = img.height / lvl.height;
  const [x1, y1, x2, y2] = face.box;
  return {
    score: face.score,
    box: [(x1 + tile.x) * kx, (y1 + tile.y) * ky, (x2 + tile.x) * kx, (y2 + tile.y) * ky],
    landmarks: face.landmarks.map(([x, y]) => [(x + tile.x) * kx, (y + tile.y) * ky] as Point),
  };
}

const area = (b: DetectedFace['box']) => Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]);

function overlapOf(a: DetectedFace['box'], b: DetectedFace['box']): { iou: number; ios: number } {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = w * h;
  return { iou: inter / (area(a) + area(b) - inter || 1), ios: inter / (Math.min(area(a), area(b)) || 1) };
}

/** The faces one pass found, in the photo's pixels, and that pass's input pixels per photo pixel. */
export interface PassFaces {
  faces: DetectedFace[];
  scale: number;
}

/**
 * Merges the faces of passes ordered coarse to fine, each already free of overlaps within
 * itself. A face of a finer pass that overlaps a kept face by more than `nmsIou` (IoU), or lies
 * mostly inside it, is the same face (or a part of it that a fine tile took for a face): it is
 * dropped — unless the kept face was under `sharpWidth` input pixels wide in its own pass, where
 * the detector places landmarks coarsely, and the two boxes match (IoU); then the finer pass's
 * face, which saw it larger and whole, takes its place. A face the whole-photo pass found at
 * `sharpWidth` or more keeps that pass's box and landmarks.
 */
export function mergePasses(passes: PassFaces[], nmsIou: number, sharpWidth = SHARP_FACE): DetectedFace[] {
  const kept: Array<{ face: DetectedFace; width: number }> = [];
  for (const pass of passes) {
    const added: Array<{ face: DetectedFace; width: number }> = [];
    for (const f of pass.faces) {
      const width = (f.box[2] - f.box[0]) * pass.scale;
      const same = kept.map((k) => ({ k, ...overlapOf(k.face.box, f.box) })).filter((o) => o.iou > nmsIou || o.ios > CONTAINED);
      const only = same.length === 1 ? (same[0] as (typeof same)[number]) : null;
      if (same.length === 0) added.push({ face: f, width });
      // The same face (not a part of it: their boxes match), seen larger than before.
      else if (only && only.iou > nmsIou && only.k.width < sharpWidth && width > only.k.width) Object.assign(only.k, { face: f, width });
    }
    kept.push(...added);
  }
  return kept.map((k) => k.face);
}
