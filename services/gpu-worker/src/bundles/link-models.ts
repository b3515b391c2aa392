// Links real face models into a generated bundle: `--detector FILE` (SCRFD layout) and
// `--embedder FILE` (ArcFace-style). Names and widths come from the graphs; preprocessing defaults
// to InsightFace's and can be overridden by a sidecar `FILE.json` holding any of
// { "inputs", "outputs", "preprocess", "strides", "anchors_per_cell", "score_threshold", "nms_iou" }.
import { existsSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { FaceDetectorEntry, FaceEmbedderEntry } from '@diffid/shared';
import { inspectGraph } from './onnx-inspect.ts';
import { ARCFACE_NORMALIZATION, ARCFACE_TEMPLATE_112 } from './tiny-bundle.ts';

export interface LinkedModel<E> {
  file: string;
  bytes: Uint8Array;
  entry: E;
}

function sidecar(path: string): Record<string, unknown> {
  const side = path.replace(/\.onnx$/, '') + '.json';
  return existsSync(side) ? (JSON.parse(readFileSync(side, 'utf8')) as Record<string, unknown>) : {};
}

/** An ArcFace-style embedder file: one image input, one embedding output of width D. */
export function linkEmbedder(path: string): LinkedModel<FaceEmbedderEntry> & { width: number } {
  const bytes = new Uint8Array(readFileSync(path));
  const io = inspectGraph(bytes);
  const extra = sidecar(path);
  const input = io.inputs[0];
  const output = io.outputs[0];
  if (!input || !output) throw new Error(`${basename(path)}: the embedder needs one input and one output`);
  const size = typeof input.shape[2] === 'number' ? input.shape[2] : 112;
  const width = output.shape[1];
  if (typeof width !== 'number') throw new Error(`${basename(path)}: the embedding width is not fixed in the graph (${String(width)})`);
  const entry: FaceEmbedderEntry = {
    file: 'face_embedder.onnx',
    sha256: '',
    inputs: (extra.inputs as Record<string, string>) ?? { pixels: input.name },
    outputs: (extra.outputs as Record<string, string>) ?? { embedding: output.name },
    preprocess: { ...ARCFACE_NORMALIZATION, size, template: ARCFACE_TEMPLATE_112.map(([x, y]) => [(x * size) / 112, (y * size) / 112]), ...(extra.preprocess as object) },
  };
  return { file: entry.file, bytes, entry, width };
}

/** An SCRFD-layout detector file: outputs named score_S, bbox_S, kps_S (or mapped by a sidecar). */
export function linkDetector(path: string): LinkedModel<FaceDetectorEntry> {
  const bytes = new Uint8Array(readFileSync(path));
  const io = inspectGraph(bytes);
  const extra = sidecar(path);
  const input = io.inputs[0];
  if (!input) throw new Error(`${basename(path)}: the detector has no input`);
  const size = typeof input.shape[2] === 'number' ? input.shape[2] : 640;
  let outputs = extra.outputs as Record<string, string> | undefined;
  if (!outputs) {
    outputs = {};
    for (const o of io.outputs) {
      if (/^(score|bbox|kps)_\d+$/.test(o.name)) outputs[o.name] = o.name;
    }
    if (Object.keys(outputs).length === 0) {
      throw new Error(`${basename(path)}: outputs are not named score_S / bbox_S / kps_S; map them in a sidecar ${basename(path).replace(/\.onnx$/, '')}.json`);
    }
  }
  const strides = [...new Set(Object.keys(outputs).map((k) => Number(k.split('_')[1])))].sort((a, b) => a - b);
  const entry: FaceDetectorEntry = {
    file: 'face_detector.onnx',
    sha256: '',
    inputs: (extra.inputs as Record<string, string>) ?? { pixels: input.name },
    outputs,
    preprocess: { channel_order: 'RGB', divide_by: 1, mean: [127.5, 127.5, 127.5], std: [128, 128, 128], size, resize: 'letterbox_top_left', ...(extra.preprocess as object) },
    strides: (extra.strides as number[]) ?? strides,
    anchors_per_cell: (extra.anchors_per_cell as number) ?? 2,
    score_threshold: (extra.score_threshold as number) ?? 0.5,
    nms_iou: (extra.nms_iou as number) ?? 0.4,
  };
  return { file: entry.file, bytes, entry };
}
