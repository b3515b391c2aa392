// The model-bundle contract: a directory with manifest.json, ONNX graphs and tokenizer files.
// The JSON Schema beside this file is the authority on shape; these types mirror it, and the
// cross-field rules a schema cannot say are checked in `validateManifest`.

import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import { assertSupportedScheduler, type SchedulerConfig } from '../diffusion/schedule.ts';

export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_FORMAT = 'diffid-bundle';
export const MANIFEST_VERSION = 1;

/** The graphs a bundle holds. face_detector is optional; without it inputs are aligned portraits. */
export const ROLES = [
  'text_encoder',
  'image_encoder',
  'face_embedder',
  'face_detector',
  'adapter',
  'unet',
  'vae_encoder',
  'vae_decoder',
] as const;
export type Role = (typeof ROLES)[number];
export const OPTIONAL_ROLES: ReadonlySet<Role> = new Set<Role>(['face_detector']);

/**
 * The ports of each role: keys of the manifest's `inputs` / `outputs` maps, whose values are the
 * graph's own tensor names. Detector outputs are per stride and depend on its layout
 * (DETECTOR_LAYOUTS): score_8, bbox_8, kps_8, … for SCRFD.
 */
export const ROLE_PORTS = {
  text_encoder: { inputs: ['input_ids'], outputs: ['hidden_states'] },
  image_encoder: { inputs: ['pixels'], outputs: ['embedding'] },
  face_embedder: { inputs: ['pixels'], outputs: ['embedding'] },
  face_detector: { inputs: ['pixels'], outputs: [] },
  adapter: { inputs: ['face_embedding', 'image_embedding', 'text_embedding'], outputs: ['conditioning'] },
  unet: { inputs: ['sample', 'timestep', 'encoder_hidden_states'], outputs: ['noise'] },
  vae_encoder: { inputs: ['pixels'], outputs: ['latent'] },
  vae_decoder: { inputs: ['latent'], outputs: ['pixels'] },
} as const satisfies Record<Role, { inputs: readonly string[]; outputs: readonly string[] }>;

/** A file of the bundle, relative to its directory, with the sha256 it must hash to. */
export interface BundleFile {
  file: string;
  sha256: string;
}

/**
 * How pixels become an encoder's input: x = (p / divide_by − mean) / std per channel, p in 0…255,
 * channels in `channel_order`, NCHW float32.
 */
export interface Normalization {
  channel_order: 'RGB' | 'BGR';
  divide_by: number;
  mean: [number, number, number];
  std: [number, number, number];
}

export interface GraphEntry extends BundleFile {
  inputs: Record<string, string>;
  outputs: Record<string, string>;
  /** Files holding the graph's weights (ONNX external data), as the graph names them beside it. */
  external_data?: BundleFile[];
}

export interface ImageEncoderEntry extends GraphEntry {
  preprocess: Normalization & { size: number; resize: 'shortest_side_center_crop' };
}

export interface FaceEmbedderEntry extends GraphEntry {
  /** The aligned crop: `size`² pixels, 5 landmarks mapped onto `template` (crop pixel coordinates). */
  preprocess: Normalization & { size: number; template: Array<[number, number]> };
}

/**
 * The face-detector output layouts the service decodes: the outputs each stride has (ports
 * `<output>_<stride>`), the width of each output's rows, and the landmarks in their order, named
 * as seen in the image (left_eye is the eye on the image's left).
 * - scrfd (InsightFace SCRFD): scores are probabilities; `bbox` holds distances from the anchor
 *   point (cell corner) to the box sides and `kps` offsets of 5 landmarks, both in units of the stride.
 * - blazeface (MediaPipe BlazeFace): scores are logits; `regressors` holds the box centre offset
 *   from the cell centre, the box size and 6 keypoint offsets, in input pixels.
 */
export const DETECTOR_LAYOUTS = {
  scrfd: {
    outputs: { score: 1, bbox: 4, kps: 10 },
    landmarks: ['left_eye', 'right_eye', 'nose', 'mouth_left', 'mouth_right'],
  },
  blazeface: {
    outputs: { score: 1, regressors: 16 },
    landmarks: ['left_eye', 'right_eye', 'nose', 'mouth', 'left_ear', 'right_ear'],
  },
} as const;
export type DetectorLayout = keyof typeof DETECTOR_LAYOUTS;

export interface FaceDetectorEntry extends GraphEntry {
  layout: DetectorLayout;
  preprocess: Normalization & { size: number; resize: 'letterbox_top_left'; tensor_layout?: 'NCHW' | 'NHWC' };
  strides: number[];
  /** One count for every stride, or one per stride. */
  anchors_per_cell: number | number[];
  score_threshold: number;
  nms_iou: number;
}

/** The detector's output ports, stride by stride: `score_8`, `bbox_8`, … */
export function detectorPorts(det: Pick<FaceDetectorEntry, 'layout' | 'strides'>): string[] {
  return det.strides.flatMap((s) => Object.keys(DETECTOR_LAYOUTS[det.layout].outputs).map((o) => `${o}_${s}`));
}

/** Anchors per cell at the i-th stride. */
export function anchorsAt(det: Pick<FaceDetectorEntry, 'anchors_per_cell'>, i: number): number {
  const a = det.anchors_per_cell;
  return typeof a === 'number' ? a : (a[i] as number);
}

/**
 * The anchor grid of the i-th stride on the detector's input: ⌈size/stride⌉² cells, the anchors
 * of each, and the rows every output of that stride has; `why` says so for messages.
 */
export function anchorGrid(det: Pick<FaceDetectorEntry, 'anchors_per_cell' | 'strides' | 'preprocess'>, i: number): { stride: number; cells: number; anchors: number; rows: number; why: string } {
  const stride = det.strides[i] as number;
  const size = det.preprocess.size;
  const cells = Math.ceil(size / stride);
  const anchors = anchorsAt(det, i);
  return { stride, cells, anchors, rows: cells * cells * anchors, why: `${cells}×${cells} cells × ${anchors} anchors at stride ${stride} on a ${size}² input` };
}

export interface VaeEncoderEntry extends GraphEntry {
  /** `latent`: the graph emits a latent (diffusers); `mean_logvar`: 2·C channels, mean first (optimum). */
  output_kind: 'latent' | 'mean_logvar';
}

/** What the adapter emits and the shape decisions the paper leaves open (docs/adapter.md). */
export interface AdapterSpec {
  /** Which adapter emits the conditioning (docs/exporting-adapters.md); the pipeline treats all alike. */
  architecture: 'diff-id' | 'ip-adapter-faceid' | 'arc2face' | 'analytic-demo';
  /** Tokens of e_id (eq. 6): e'_arc, e'_i, e_max, e_avg. */
  identity_tokens: number;
  /** Tokens of ẽ_t: the text encoder's sequence length. */
  text_tokens: number;
  /** diff-id only (required there): what MaxPool / AvgPool reduce over, the token axis of e_img = [e'_arc; e'_i]. */
  pooling?: 'over_modalities';
  /**
   * The conditioning sequence's parts in order: identity (identity_tokens long) and attribute
   * (text_tokens long). For diff-id, how eq. 13 joins its two branches along the token axis.
   */
  fused_sequence: Array<'identity' | 'attribute'>;
  conditioning_tokens: number;
  conditioning_width: number;
}

export interface TokenizerSpec {
  /** Either vocab.json + merges.txt (as SD exports ship them) or one tokenizer.json. */
  vocab?: BundleFile;
  merges?: BundleFile;
  tokenizer_json?: BundleFile;
  max_length: number;
  bos_token: string;
  eos_token: string;
  pad_token: string;
}

/** What the paper's reference image I is (see the schema's description). */
export type ReferenceSpec = { kind: 'photo' } | { kind: 'aligned_face'; face_fraction: number };

/** Sampling settings the bundle recommends; requests that leave them out get these. */
export interface BundleDefaults {
  steps?: number;
  guidance_scale?: number;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: typeof MANIFEST_VERSION;
  name: string;
  description?: string;
  image: { width: number; height: number };
  latent: { channels: number; downscale: number; scaling_factor: number };
  scheduler: SchedulerConfig;
  tokenizer: TokenizerSpec;
  adapter: AdapterSpec;
  reference?: ReferenceSpec;
  defaults?: BundleDefaults;
  models: {
    text_encoder: GraphEntry;
    image_encoder: ImageEncoderEntry;
    face_embedder: FaceEmbedderEntry;
    face_detector?: FaceDetectorEntry;
    adapter: GraphEntry;
    unet: GraphEntry;
    vae_encoder: VaeEncoderEntry;
    vae_decoder: GraphEntry;
  };
}

/** A manifest that does not meet the contract; `problems` lists every finding. */
export class ManifestError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`manifest.json does not meet the bundle contract:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ManifestError';
    this.problems = problems;
  }
}

/**
 * The manifest's JSON Schema (draft-07), as shipped in this package. Read from the package's src/
 * both from source and from the build (dist/bundle/ sits as deep as src/bundle/).
 */
export const manifestSchema: Record<string, unknown> = JSON.parse(
  readFileSync(new URL('../../src/bundle/manifest.schema.json', import.meta.url), 'utf8'),
) as Record<string, unknown>;

const validateShape = new Ajv({ allErrors: true, strict: true }).compile(manifestSchema);

function describe(e: ErrorObject): string {
  const where = e.instancePath === '' ? 'manifest' : e.instancePath.slice(1).replaceAll('/', '.');
  if (e.keyword === 'additionalProperties') return `${where}: unknown field "${String(e.params.additionalProperty)}"`;
  if (e.keyword === 'required') return `${where}: missing field "${String(e.params.missingProperty)}"`;
  if (e.keyword === 'enum') return `${where}: must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
  return `${where}: ${e.message ?? e.keyword}`;
}

type LinkableRole = 'face_detector' | 'face_embedder';
const entrySchemas = {} as Record<LinkableRole, ReturnType<Ajv['compile']>>;

/**
 * What is wrong with one model entry (a detector's or an embedder's), checked by the manifest
 * schema's own rules for that role; `where` prefixes each finding. Empty when it is valid.
 */
export function modelEntryProblems(role: LinkableRole, value: unknown, where: string): string[] {
  const models = (manifestSchema.properties as { models: { properties: Record<LinkableRole, object> } }).models;
  const validate = (entrySchemas[role] ??= new Ajv({ allErrors: true, strict: true }).compile(models.properties[role]));
  if (validate(value)) return [];
  return (validate.errors ?? []).map((e) => {
    const at = e.instancePath === '' ? '' : e.instancePath.slice(1).replaceAll('/', '.');
    if (e.keyword === 'additionalProperties') return `${where}: unknown field "${at ? `${at}.` : ''}${String(e.params.additionalProperty)}"`;
    if (e.keyword === 'enum') return `${where}: ${at} must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    return `${where}: ${at || 'the entry'} ${e.message ?? e.keyword}`;
  });
}

/** The detector rules a schema cannot say: its ports follow its layout and strides, one anchor count per stride. */
export function detectorProblems(det: FaceDetectorEntry): string[] {
  const problems: string[] = [];
  const expected = detectorPorts(det);
  for (const port of expected) if (!(port in det.outputs)) problems.push(`models.face_detector.outputs: missing port "${port}" (layout ${det.layout})`);
  for (const port of Object.keys(det.outputs)) {
    if (!expected.includes(port)) problems.push(`models.face_detector.outputs: unknown port "${port}" (layout ${det.layout}, strides ${det.strides.join(', ')}: the ports are ${expected.join(', ')})`);
  }
  if (Array.isArray(det.anchors_per_cell) && det.anchors_per_cell.length !== det.strides.length) {
    problems.push(`models.face_detector.anchors_per_cell: ${det.anchors_per_cell.length} counts for ${det.strides.length} strides; give one per stride or one number`);
  }
  return problems;
}

/** Validates parsed JSON against the schema and the cross-field rules; returns it typed. */
export function validateManifest(value: unknown): Manifest {
  if (!validateShape(value)) {
    // An `if` failure only restates the `then` finding beside it.
    throw new ManifestError((validateShape.errors ?? []).filter((e) => e.keyword !== 'if').map(describe));
  }
  const m = value as Manifest;
  const problems: string[] = [];
  for (const role of ROLES) {
    const entry = m.models[role];
    if (!entry) continue;
    const ports = ROLE_PORTS[role];
    for (const port of ports.inputs) if (!(port in entry.inputs)) problems.push(`models.${role}.inputs: missing port "${port}"`);
    for (const port of Object.keys(entry.inputs)) {
      if (!(ports.inputs as readonly string[]).includes(port)) problems.push(`models.${role}.inputs: unknown port "${port}"`);
    }
    if (role === 'face_detector') continue;
    for (const port of ports.outputs) if (!(port in entry.outputs)) problems.push(`models.${role}.outputs: missing port "${port}"`);
    for (const port of Object.keys(entry.outputs)) {
      if (!(ports.outputs as readonly string[]).includes(port)) problems.push(`models.${role}.outputs: unknown port "${port}"`);
    }
  }
  const det = m.models.face_detector;
  if (det) problems.push(...detectorProblems(det));
  const tok = m.tokenizer;
  const pair = Boolean(tok.vocab) && Boolean(tok.merges);
  if (pair === Boolean(tok.tokenizer_json) || (!pair && (tok.vocab || tok.merges))) {
    problems.push('tokenizer: give either vocab + merges or tokenizer_json');
  }
  if (m.image.width % m.latent.downscale !== 0 || m.image.height % m.latent.downscale !== 0) {
    problems.push(`image: ${m.image.width}×${m.image.height} is not a multiple of latent.downscale ${m.latent.downscale}`);
  }
  const a = m.adapter;
  if (a.text_tokens !== tok.max_length) {
    problems.push(`adapter.text_tokens ${a.text_tokens} differs from tokenizer.max_length ${tok.max_length}`);
  }
  const sum = a.fused_sequence.reduce((n, part) => n + (part === 'identity' ? a.identity_tokens : a.text_tokens), 0);
  if (sum !== a.conditioning_tokens) {
    problems.push(`adapter.conditioning_tokens ${a.conditioning_tokens} differs from the fused sequence's ${sum} (${a.fused_sequence.join(' + ')})`);
  }
  if (m.reference?.kind === 'aligned_face' && m.image.width !== m.image.height) {
    problems.push(`reference: an aligned_face canvas needs a square image, not ${m.image.width}×${m.image.height}`);
  }
  if (m.models.face_embedder.preprocess.template.length !== 5) {
    problems.push('models.face_embedder.preprocess.template: needs the 5 landmarks (eyes, nose, mouth corners)');
  }
  try {
    assertSupportedScheduler(m.scheduler);
  } catch (err) {
    problems.push((err as Error).message);
  }
  if (problems.length > 0) throw new ManifestError(problems);
  return m;
}

/** Every file the manifest names, with where it is named from (for messages). */
export function manifestFiles(m: Manifest): Array<{ where: string; entry: BundleFile }> {
  const files: Array<{ where: string; entry: BundleFile }> = [];
  for (const role of ROLES) {
    const entry = m.models[role];
    if (!entry) continue;
    files.push({ where: role, entry });
    for (const data of entry.external_data ?? []) files.push({ where: `${role} external data`, entry: data });
  }
  for (const key of ['vocab', 'merges', 'tokenizer_json'] as const) {
    const entry = m.tokenizer[key];
    if (entry) files.push({ where: `tokenizer.${key}`, entry });
  }
  return files;
}
