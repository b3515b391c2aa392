// Running a bundle's face detector: letterbox the image, run the graph, decode its outputs
// (vision/detect-faces.ts) and map the faces back to the image's pixels. The loader probes the
// detector once this way, so that a detector whose outputs do not fit its manifest entry is
// refused when the bundle loads.
import type { FaceDetectorEntry } from '@diffid/shared/bundle';
import { boxArea, decodeDetections, letterbox, nonMaxSuppression, type DetectedFace } from '../vision/detect-faces.ts';
import type { Point } from '../vision/face-geometry.ts';
import { normalizeToChw, type Rgb } from '../vision/pixels.ts';
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

/** Runs the detector on one image; faces are in the image's pixels, largest first. */
export async function detectFaces({ det, ports, graph }: Detector, img: Rgb): Promise<DetectedFace[]> {
  const { canvas, scale } = letterbox(img, det.preprocess.size);
  const faces = (await runDetector({ det, ports, graph }, canvas, det.score_threshold)).map((f) => ({
    score: f.score,
    box: f.box.map((v) => v / scale) as DetectedFace['box'],
    landmarks: f.landmarks.map(([x, y]) => [x / scale, y / scale] as Point),
  }));
  return nonMaxSuppression(faces, det.nms_iou).sort((a, b) => boxArea(b.box) - boxArea(a.box));
}
