// Links real face models into a generated bundle: `--detector FILE` and `--embedder FILE`. Names,
// sizes, widths and the detector's layout come from the graph; what a graph cannot say
// (normalisation, thresholds) defaults to the layout's usual values and can be set in a sidecar
// FILE.json beside the model — the model's manifest entry without `file` and `sha256`
// (docs/bundle-contract.md). Every sidecar value is checked by the manifest schema's rules.
import { existsSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { DETECTOR_LAYOUTS, anchorGrid, detectorProblems, modelEntryProblems, type DetectorLayout, type FaceDetectorEntry, type FaceEmbedderEntry } from '@diffid/shared/bundle';
import { inspectGraph, type GraphIo } from '../runtime/onnx-inspect.ts';
import { ARCFACE_NORMALIZATION, ARCFACE_TEMPLATE_112 } from './tiny-bundle.ts';

export interface LinkedModel<E> {
  file: string;
  bytes: Uint8Array;
  entry: E;
}

/** A model that cannot be linked as it is; the message says what to write. */
export class LinkError extends Error {
  override name = 'LinkError';
}

type Json = Record<string, unknown>;
const PREPROCESS_KEYS = new Set(['channel_order', 'divide_by', 'mean', 'std', 'size', 'resize', 'tensor_layout', 'template']);

const sidecarPath = (path: string) => path.replace(/\.onnx$/, '') + '.json';

/** The sidecar's settings ({} when there is none); `given` (the caller's) wins over the file's. */
function readSidecar(path: string, given: Json = {}): { values: Json; where: string } {
  const side = sidecarPath(path);
  let values: Json = {};
  if (existsSync(side)) {
    try {
      values = JSON.parse(readFileSync(side, 'utf8')) as Json;
    } catch (err) {
      throw new LinkError(`${basename(side)} is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof values !== 'object' || values === null || Array.isArray(values)) throw new LinkError(`${basename(side)} must hold a JSON object`);
  }
  return { values: { ...values, ...given, preprocess: { ...(values.preprocess as Json), ...(given.preprocess as Json) } }, where: existsSync(side) ? basename(side) : 'the settings' };
}

/** The entry, checked as the manifest would check it; misplaced preprocessing keys get a hint. */
function checked<E>(role: 'face_detector' | 'face_embedder', entry: E, sidecar: { values: Json; where: string }, rules: (valid: E) => string[] = () => []): E {
  const problems = modelEntryProblems(role, entry, sidecar.where);
  if (problems.length === 0) problems.push(...rules(entry).map((p) => `${sidecar.where}: ${p}`));
  for (const key of Object.keys(sidecar.values)) {
    if (PREPROCESS_KEYS.has(key)) problems.push(`${sidecar.where}: "${key}" belongs inside "preprocess": { "${key}": … }`);
  }
  if (problems.length > 0) throw new LinkError(`cannot link ${role}:\n  - ${[...new Set(problems)].join('\n  - ')}`);
  return entry;
}

function withoutFileFields(values: Json): Json {
  const { preprocess: _p, ...rest } = values;
  return rest;
}

/** The graph's inputs and outputs; a file that is not an ONNX model is a LinkError naming it. */
function graphOf(path: string, bytes: Uint8Array): ReturnType<typeof inspectGraph> {
  try {
    return inspectGraph(bytes);
  } catch (err) {
    throw new LinkError(`${basename(path)} is not an ONNX model that can be read (${(err as Error).message})`);
  }
}

/** An ArcFace-style embedder file: one image input, one embedding output of width D. `bytes`: the file's, when already read. */
export function linkEmbedder(path: string, given?: Json, bytes: Uint8Array = new Uint8Array(readFileSync(path))): LinkedModel<FaceEmbedderEntry> & { width: number } {
  const io = graphOf(path, bytes);
  const sidecar = readSidecar(path, given);
  const input = io.inputs[0];
  const output = io.outputs[0];
  if (!input || !output) throw new LinkError(`${basename(path)}: the embedder needs one input and one output`);
  const size = typeof input.shape[2] === 'number' ? input.shape[2] : 112;
  const width = output.shape[1];
  if (typeof width !== 'number') throw new LinkError(`${basename(path)}: the embedding width is not fixed in the graph (${String(width)})`);
  const entry = {
    file: 'face_embedder.onnx',
    sha256: '0'.repeat(64),
    inputs: { pixels: input.name },
    outputs: { embedding: output.name },
    ...withoutFileFields(sidecar.values),
    preprocess: {
      ...ARCFACE_NORMALIZATION,
      size,
      template: ARCFACE_TEMPLATE_112.map(([x, y]) => [(x * size) / 112, (y * size) / 112]),
      ...(sidecar.values.preprocess as Json),
    },
  } as FaceEmbedderEntry;
  return { file: entry.file, bytes, entry: checked('face_embedder', entry, sidecar), width };
}

/** Values a detector of each layout usually has, where its graph does not say. */
const LAYOUT_DEFAULTS: Record<DetectorLayout, Pick<FaceDetectorEntry, 'anchors_per_cell' | 'score_threshold' | 'nms_iou'> & { preprocess: Omit<FaceDetectorEntry['preprocess'], 'size'> }> = {
  scrfd: {
    preprocess: { channel_order: 'RGB', divide_by: 1, mean: [127.5, 127.5, 127.5], std: [128, 128, 128], resize: 'letterbox_top_left', tensor_layout: 'NCHW' },
    anchors_per_cell: 2,
    score_threshold: 0.5,
    nms_iou: 0.4,
  },
  blazeface: {
    preprocess: { channel_order: 'RGB', divide_by: 1, mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5], resize: 'letterbox_top_left', tensor_layout: 'NHWC' },
    anchors_per_cell: [2, 6],
    score_threshold: 0.75,
    nms_iou: 0.3,
  },
};

type Output = GraphIo['outputs'][number];
const rowWidth = (o: Output) => o.shape[o.shape.length - 1];
const rows = (o: Output) => (o.shape.length >= 2 ? o.shape[o.shape.length - 2] : undefined);

/** Recognises the layout from the outputs: by name (score_8 …), else by row widths in order. */
function recognise(io: GraphIo, size: number | undefined): { layout: DetectorLayout; strides: number[]; outputs: Record<string, string>; anchors?: number[] } | null {
  const named = io.outputs.filter((o) => /^(score|bbox|kps)_\d+$/.test(o.name));
  if (named.length > 0) {
    const strides = [...new Set(named.map((o) => Number(o.name.split('_')[1])))].sort((a, b) => a - b);
    return { layout: 'scrfd', strides, outputs: Object.fromEntries(named.map((o) => [o.name, o.name])) };
  }
  const widths = io.outputs.map(rowWidth).join(',');
  // InsightFace's numbered SCRFD export: scores for strides 8/16/32, then boxes, then keypoints.
  if (widths === '1,1,1,4,4,4,10,10,10') {
    const strides = [8, 16, 32];
    const outputs: Record<string, string> = {};
    ['score', 'bbox', 'kps'].forEach((kind, k) => strides.forEach((s, i) => (outputs[`${kind}_${s}`] = (io.outputs[k * 3 + i] as Output).name)));
    return { layout: 'scrfd', strides, outputs };
  }
  // MediaPipe BlazeFace: scores of the 2-anchor and 6-anchor grids, then their regressors.
  if (widths === '1,1,16,16' && size !== undefined) {
    const anchors = [2, 6];
    const strides = [0, 1].map((i) => {
      const n = rows(io.outputs[i] as Output);
      return typeof n === 'number' ? size / Math.sqrt(n / (anchors[i] as number)) : NaN;
    });
    if (!strides.every((s) => Number.isInteger(s) && s > 0)) return null;
    const outputs: Record<string, string> = {};
    strides.forEach((s, i) => {
      outputs[`score_${s}`] = (io.outputs[i] as Output).name;
      outputs[`regressors_${s}`] = (io.outputs[i + 2] as Output).name;
    });
    return { layout: 'blazeface', strides, outputs, anchors };
  }
  return null;
}

/** Where the graph fixes an output's row count, it must be the anchor grid's (wrong strides or anchors). */
function gridProblems(io: GraphIo, det: FaceDetectorEntry): string[] {
  const problems: string[] = [];
  det.strides.forEach((stride, i) => {
    const grid = anchorGrid(det, i);
    for (const name of Object.keys(DETECTOR_LAYOUTS[det.layout].outputs)) {
      const tensor = det.outputs[`${name}_${stride}`];
      const o = io.outputs.find((x) => x.name === tensor);
      if (!o) {
        problems.push(`outputs.${name}_${stride} names "${tensor}", but the graph's outputs are ${io.outputs.map((x) => `"${x.name}"`).join(', ')}`);
        continue;
      }
      const n = rows(o);
      if (typeof n === 'number' && n !== grid.rows) problems.push(`${name}_${stride} ("${tensor}") has ${n} rows, but ${grid.why} make ${grid.rows}; check strides and anchors_per_cell`);
    }
  });
  return problems;
}

function sidecarExample(io: GraphIo): string {
  const outputs = Object.fromEntries(io.outputs.map((o, i) => [`<score|bbox|kps>_<stride> for output ${i}`, o.name]));
  return JSON.stringify({ layout: 'scrfd', strides: [8, 16, 32], anchors_per_cell: 2, outputs }, null, 2);
}

/** A face detector file in a layout the contract names (DETECTOR_LAYOUTS). `bytes`: the file's, when already read. */
export function linkDetector(path: string, given?: Json, bytes: Uint8Array = new Uint8Array(readFileSync(path))): LinkedModel<FaceDetectorEntry> {
  const io = graphOf(path, bytes);
  const sidecar = readSidecar(path, given);
  const input = io.inputs[0];
  if (!input) throw new LinkError(`${basename(path)}: the detector has no input`);
  const nhwc = input.shape[3] === 3;
  const sizeAxis = nhwc ? 1 : 2;
  const size = typeof input.shape[sizeAxis] === 'number' ? (input.shape[sizeAxis] as number) : undefined;
  const found = recognise(io, size);
  const side = sidecar.values;
  if (!found && !(side.layout && side.outputs && side.strides)) {
    const listed = io.outputs.map((o) => `"${o.name}" [${o.shape.join(', ')}]`).join(', ');
    throw new LinkError(
      `${basename(path)}: its outputs (${listed}) are not a layout this service recognises (${Object.keys(DETECTOR_LAYOUTS).join(', ')}). ` +
        `Map them in ${basename(sidecarPath(path))}, for example:\n${sidecarExample(io)}`,
    );
  }
  const layout = (side.layout as DetectorLayout | undefined) ?? found?.layout ?? 'scrfd';
  const defaults = LAYOUT_DEFAULTS[layout] ?? LAYOUT_DEFAULTS.scrfd;
  const entry = {
    file: 'face_detector.onnx',
    sha256: '0'.repeat(64),
    layout,
    inputs: { pixels: input.name },
    outputs: found?.outputs ?? {},
    strides: found?.strides ?? [],
    anchors_per_cell: found?.anchors ?? defaults.anchors_per_cell,
    score_threshold: defaults.score_threshold,
    nms_iou: defaults.nms_iou,
    ...withoutFileFields(side),
    preprocess: { ...defaults.preprocess, size: size ?? 640, ...(side.preprocess as Json) },
  } as FaceDetectorEntry;
  const rules = (det: FaceDetectorEntry) => {
    const ports = detectorProblems(det);
    return ports.length > 0 ? ports : gridProblems(io, det);
  };
  return { file: entry.file, bytes, entry: checked('face_detector', entry, sidecar, rules) };
}
