// Running a bundle's face detector: letterbox the image, run the graph, decode its outputs
// (vision/detect-faces.ts) and map the faces back to the image's pixels; then, on a photo whose
// small faces the letterboxed pass cannot see, the finer tiled passes that vision/face-tiles.ts
// plans, merged with it. The loader probes the detector once this way, so that a detector whose
// outputs do not fit its manifest entry is refused when the bundle loads.
import type { FaceDetectorEntry } from '@diffid/shared/bundle';
import { boxArea, decodeDetections, letterbox, nonMaxSuppression, type DetectedFace } from '../vision/detect-faces.ts';
import type { Point } from '../vision/face-geometry.ts';
import { DETECTABLE_FACE, cutByTile, faceFromTile, mergePasses, planDetection, tileCanvas, type DetectionPlan, type PassFaces, type PlanOptions } from '../vision/face-tiles.ts';
import { normalizeToChw, resizeRgb, type Rgb } from '../vision/pixels.ts';
import type { RolePorts } from './bundle-signature.ts';
import type { Graph, Tensor } from './onnx.ts';

export interface Detector {
  det: FaceDetectorEntry;
  ports: RolePorts<'face_detector'>;
  graph: Graph;
}

/** Runs the detector on its letterboxed input and decodes every anchor over `threshold`. */
async function runDetector({ det, ports, graph }: Detector, canvas: Rgb, threshold: number): Promise<DetectedFace[]> {
  const size = det.preprocess.size;
  const layout = det.preprocess.tensor_layout ?? 'NCHW';
  const dims = layout === 'NHWC' ? [1, size, size, 3] : [1, 3, size, size];
  const out: Record<string, Tensor> = await graph.run({ [ports.inputs.pixels.name]: { dtype: 'float32', data: normalizeToChw(canvas, det.preprocess, layout), dims } });
  return decodeDetections({ ...det, score_threshold: threshold }, (port) => {
    const t = ports.outputs[port] && out[ports.outputs[port].name];
    return t?.data instanceof Float32Array ? t.data : undefined;
  });
}

/**
 * Runs the detector once on a blank input when the bundle loads, so that strides or anchors that
 * do not match the graph's outputs refuse the bundle (BUNDLE_GRAPH_MISMATCH) instead of failing
 * every job; a graph with symbolic output sizes can be checked no other way.
 */
export async function probeDetector(detector: Detector): Promise<void> {
  const size = detector.det.preprocess.size;
  await runDetector(detector, { data: new Uint8Array(size * size * 3), width: size, height: size }, Infinity);
}

/**
 * The passes detectFaces makes on `img` (see planDetection): faces down to MIN_FACE_UPLOAD upload
 * pixels (`img.scale` says how many upload pixels a decoded one stands for), at most
 * MAX_DETECTOR_RUNS runs of the graph.
 */
export function detectionPlan(det: FaceDetectorEntry, img: Pick<Rgb, 'width' | 'height' | 'scale'>, options: PlanOptions = {}): DetectionPlan {
  return planDetection(img, det.preprocess.size, { uploadScale: img.scale ?? 1, detectable: DETECTABLE_FACE[det.layout], ...options });
}

/**
 * Runs the detector on one image; faces are in the image's pixels, largest first. First on the
 * whole image letterboxed — a face it finds at twice the detectable width or more is kept as it
 * is, so a portrait's face has the same box and landmarks whatever else runs — then on the tiles
 * of each finer level that detectionPlan asks for; a tile's face that touches one of its inner
 * sides is left to the neighbouring tile that holds it whole (mergePasses says how passes merge).
 * `options` can bound the plan (`maxRuns: 1` is the whole-image pass alone).
 */
export async function detectFaces(detector: Detector, img: Rgb, options: PlanOptions = {}): Promise<DetectedFace[]> {
  const { det } = detector;
  const size = det.preprocess.size;
  const { canvas, scale } = letterbox(img, size);
  const whole = (await runDetector(detector, canvas, det.score_threshold)).map((f) => ({
    score: f.score,
    box: f.box.map((v) => v / scale) as DetectedFace['box'],
    landmarks: f.landmarks.map(([x, y]) => [x / scale, y / scale] as Point),
  }));
  const passes: PassFaces[] = [{ faces: nonMaxSuppression(whole, det.nms_iou), scale }];
  for (const level of detectionPlan(det, img, options).levels) {
    // The same filter as the letterbox's, so that a face looks alike to the detector at every level.
    const pixels = resizeRgb(img, level.width, level.height, 'bilinear');
    const found: DetectedFace[] = [];
    for (const tile of level.tiles) {
      for (const f of await runDetector(detector, tileCanvas(pixels, tile, size), det.score_threshold)) {
        if (!cutByTile(f, tile, size)) found.push(faceFromTile(f, tile, level, img));
      }
    }
    passes.push({ faces: nonMaxSuppression(found, det.nms_iou), scale: level.scale });
  }
  // A face seen under twice the detectable width is placed coarsely (SHARP_FACE).
  return mergePasses(passes, det.nms_iou, 2 * DETECTABLE_FACE[det.layout]).sort((a, b) => boxArea(b.box) - boxArea(a.box));
}
