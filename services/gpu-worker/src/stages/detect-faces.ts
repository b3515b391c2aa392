// SCRFD-layout face detection (InsightFace): letterbox to the detector's square input at the
// top-left, decode boxes and 5-point landmarks per stride from anchor centres, keep scores over
// the threshold, undo the letterbox scale, and suppress overlaps (NMS).
import { DiffIdError } from '@diffid/shared';
import type { Point } from '../face-geometry.ts';
import { normalizeToChw, resizeRgb, type Rgb } from '../pixels.ts';
import type { StageContext } from './context.ts';

export interface DetectedFace {
  /** x1, y1, x2, y2 in the image's pixels. */
  box: [number, number, number, number];
  score: number;
  /** Left eye, right eye, nose, left and right mouth corners. */
  landmarks: Point[];
}

const area = (b: DetectedFace['box']) => Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]);

function iou(a: DetectedFace['box'], b: DetectedFace['box']): number {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = w * h;
  return inter / (area(a) + area(b) - inter || 1);
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

/** Detected faces, largest box first. */
export async function detectFaces(ctx: StageContext, img: Rgb): Promise<DetectedFace[]> {
  const det = ctx.bundle.manifest.models.face_detector;
  const ports = ctx.bundle.ports.face_detector;
  const graph = ctx.bundle.graphs.face_detector;
  if (!det || !ports || !graph) throw new Error('the bundle has no face detector');
  const size = det.preprocess.size;
  const { canvas, scale } = letterbox(img, size);
  const input = ports.inputs.pixels;
  const out = await graph.run({ [input.name]: { dtype: 'float32', data: normalizeToChw(canvas, det.preprocess), dims: [1, 3, size, size] } });
  const found: DetectedFace[] = [];
  for (const stride of det.strides) {
    const get = (kind: string) => {
      const port = ports.outputs[`${kind}_${stride}`];
      const t = port && out[port.name];
      if (!t || !(t.data instanceof Float32Array)) throw new DiffIdError('INFERENCE_FAILED', `face detector: no ${kind}_${stride} output`);
      return t.data;
    };
    const scores = get('score');
    const boxes = get('bbox');
    const kps = get('kps');
    const cells = Math.ceil(size / stride);
    const anchors = det.anchors_per_cell;
    if (scores.length !== cells * cells * anchors) {
      throw new DiffIdError('INFERENCE_FAILED', `face detector: stride ${stride} gave ${scores.length} scores for ${cells}×${cells}×${anchors} anchors`);
    }
    for (let i = 0; i < scores.length; i++) {
      const score = scores[i] as number;
      if (score < det.score_threshold) continue;
      const cell = Math.floor(i / anchors);
      const cx = (cell % cells) * stride;
      const cy = Math.floor(cell / cells) * stride;
      const d = (k: number) => (boxes[i * 4 + k] as number) * stride;
      const box: DetectedFace['box'] = [(cx - d(0)) / scale, (cy - d(1)) / scale, (cx + d(2)) / scale, (cy + d(3)) / scale];
      const landmarks: Point[] = [];
      for (let k = 0; k < 5; k++) {
        landmarks.push([(cx + (kps[i * 10 + 2 * k] as number) * stride) / scale, (cy + (kps[i * 10 + 2 * k + 1] as number) * stride) / scale]);
      }
      found.push({ box, score, landmarks });
    }
  }
  return nonMaxSuppression(found, det.nms_iou).sort((a, b) => area(b.box) - area(a.box));
}
