// Face detection in the layouts the bundle contract names (DETECTOR_LAYOUTS): letterbox to the
// detector's square input at the top-left, decode boxes and landmarks per stride from the anchor
// grid, keep scores over the threshold, undo the letterbox scale, and suppress overlaps (NMS).
import { DETECTOR_LAYOUTS, anchorGrid, type DetectorLayout, type FaceDetectorEntry } from '@diffid/shared/bundle';
import { DiffIdError } from '@diffid/shared/contract';
import type { Point } from './face-geometry.ts';
import { resizeRgb, type Rgb } from './pixels.ts';

export interface DetectedFace {
  /** x1, y1, x2, y2 in the image's pixels. */
  box: [number, number, number, number];
  score: number;
  /** In the order of the layout's DETECTOR_LAYOUTS landmarks. */
  landmarks: Point[];
}

export const boxArea = (b: DetectedFace['box']) => Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]);

function iou(a: DetectedFace['box'], b: DetectedFace['box']): number {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = w * h;
  return inter / (boxArea(a) + boxArea(b) - inter || 1);
}

/** Greedy non-maximum suppression, highest score first. */
export function nonMaxSuppression(faces: DetectedFace[], threshold: number): DetectedFace[] {
  const kept: DetectedFace[] = [];
  for (const f of [...faces].sort((x, y) => y.score - x.score)) {
    if (kept.every((k) => iou(k.box, f.box) <= threshold)) kept.push(f);
  }
  return kept;
}

/** The letterboxed detector input and the scale from image to input pixels. */
export function letterbox(img: Rgb, size: number): { canvas: Rgb; scale: number } {
  const scale = size / Math.max(img.width, img.height);
  const w = Math.max(1, Math.round(img.width * scale));
  const h = Math.max(1, Math.round(img.height * scale));
  const resized = resizeRgb(img, w, h, 'bilinear');
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < h; y++) data.set(resized.data.subarray(y * w * 3, (y + 1) * w * 3), y * size * 3);
  return { canvas: { data, width: size, height: size }, scale: h / img.height };
}

/** One stride's outputs, by the layout's output names (score, bbox, …), as flat rows. */
type StrideOutputs = Record<string, Float32Array>;
/** Decodes one anchor of one stride into input-pixel coordinates, or null under the threshold. */
type AnchorDecoder = (o: StrideOutputs, i: number, anchor: { col: number; row: number; stride: number }, threshold: number) => DetectedFace | null;

const sigmoid = (x: number) => 1 / (1 + Math.exp(-Math.max(-100, Math.min(100, x))));

const DECODERS: Record<DetectorLayout, AnchorDecoder> = {
  // The anchor point is the cell's corner; distances and offsets are in units of the stride.
  scrfd: (o, i, { col, row, stride }, threshold) => {
    const score = o.score?.[i] as number;
    if (!(score >= threshold)) return null;
    const cx = col * stride;
    const cy = row * stride;
    const d = (k: number) => (o.bbox?.[i * 4 + k] as number) * stride;
    const kp = (k: number) => (o.kps?.[i * 10 + k] as number) * stride;
    const landmarks: Point[] = [];
    for (let k = 0; k < 5; k++) landmarks.push([cx + kp(2 * k), cy + kp(2 * k + 1)]);
    return { box: [cx - d(0), cy - d(1), cx + d(2), cy + d(3)], score, landmarks };
  },
  // The anchor is the cell's centre; the regressors are in input pixels; scores are logits.
  blazeface: (o, i, { col, row, stride }, threshold) => {
    const score = sigmoid(o.score?.[i] as number);
    if (!(score >= threshold)) return null;
    const ax = (col + 0.5) * stride;
    const ay = (row + 0.5) * stride;
    const r = (k: number) => o.regressors?.[i * 16 + k] as number;
    const cx = ax + r(0);
    const cy = ay + r(1);
    const landmarks: Point[] = [];
    for (let k = 0; k < 6; k++) landmarks.push([ax + r(4 + 2 * k), ay + r(5 + 2 * k)]);
    return { box: [cx - r(2) / 2, cy - r(3) / 2, cx + r(2) / 2, cy + r(3) / 2], score, landmarks };
  },
};

/**
 * Decodes a detector's raw outputs into faces over the threshold, in input pixels, before NMS.
 * Refuses outputs whose lengths do not match the strides and anchors.
 */
export function decodeDetections(det: Pick<FaceDetectorEntry, 'layout' | 'strides' | 'anchors_per_cell' | 'score_threshold' | 'preprocess'>, outputs: (port: string) => Float32Array | undefined): DetectedFace[] {
  const layout = DETECTOR_LAYOUTS[det.layout];
  const found: DetectedFace[] = [];
  det.strides.forEach((stride, s) => {
    const { cells, anchors, rows, why } = anchorGrid(det, s);
    const o: StrideOutputs = {};
    for (const [name, width] of Object.entries(layout.outputs)) {
      const data = outputs(`${name}_${stride}`);
      if (!data) throw new DiffIdError('BUNDLE_GRAPH_MISMATCH', `face detector: no ${name}_${stride} output`);
      if (data.length !== rows * width) {
        throw new DiffIdError('BUNDLE_GRAPH_MISMATCH', `face detector: ${name}_${stride} has ${data.length / width} rows, but ${why} make ${rows}; check the manifest's strides and anchors_per_cell`);
      }
      o[name] = data;
    }
    for (let i = 0; i < rows; i++) {
      const cell = Math.floor(i / anchors);
      const face = DECODERS[det.layout](o, i, { col: cell % cells, row: Math.floor(cell / cells), stride }, det.score_threshold);
      if (face) found.push(face);
    }
  });
  return found;
}
