// Checks a manifest against the graphs' own metadata, in two passes: resolve every port the
// contract declares (ROLE_PORTS) to its graph tensor, then check each against its rule — dtypes,
// ranks and fixed sizes. Cross-graph widths (face embedding D, CLIP image embedding E, text width)
// are read from the graph that produces them and required of the graphs that consume them. The
// result is typed: a stage reads `ports.unet.inputs.sample` and the compiler knows it is there.

import { DETECTOR_LAYOUTS, OPTIONAL_ROLES, ROLES, anchorGrid, type Manifest, type ROLE_PORTS, type Role } from '@diffid/shared/bundle';
import type { DType, GraphSignature, TensorSignature } from './onnx.ts';

/** A port resolved against its graph: the tensor's name, dtype and shape. */
export type ResolvedPort = TensorSignature;

/** Dimensions the pipeline adapts to, as the graphs state them. */
export interface BundleDims {
  faceEmbedding: number;
  imageEmbedding: number;
  textLength: number;
  textWidth: number;
  conditioningTokens: number;
  conditioningWidth: number;
  latentChannels: number;
  latentHeight: number;
  latentWidth: number;
}

/** Values in one latent: channels × height × width. */
export function latentValueCount(d: Pick<BundleDims, 'latentChannels' | 'latentHeight' | 'latentWidth'>): number {
  return d.latentChannels * d.latentHeight * d.latentWidth;
}

type RoleSpec<R extends Role> = (typeof ROLE_PORTS)[R];
/** One T per port of a role, by the contract's names. The detector's outputs are named per stride (score_8, …). */
type PerPort<R extends Role, T> = {
  inputs: Record<RoleSpec<R>['inputs'][number], T>;
  outputs: R extends 'face_detector' ? Record<string, T> : Record<RoleSpec<R>['outputs'][number], T>;
};
/** A role's ports, resolved against its graph. */
export type RolePorts<R extends Role> = PerPort<R, ResolvedPort>;
type RequiredRole = Exclude<Role, 'face_detector'>;
/** Every role's ports: the required roles always, the detector when the bundle has one. */
export type BundlePorts = { [R in RequiredRole]: RolePorts<R> } & { face_detector?: RolePorts<'face_detector'> };

export interface ResolvedSignatures {
  ports: BundlePorts;
  dims: BundleDims;
}

/** Every way the graphs differ from the manifest, each naming role, file and difference. */
export class SignatureMismatch extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`the model bundle's graphs do not match its manifest:\n  - ${problems.join('\n  - ')}`);
    this.name = 'SignatureMismatch';
    this.problems = problems;
  }
}

type Dim = number | null; // null: any size
/** What a port must be: one of `dtypes`, one of `shapes` (a rank not listed is a mismatch). */
interface Rule {
  dtypes: DType[];
  shapes: Dim[][];
  /** Why a fixed size is required, by axis, for the message. */
  why?: Record<number, string>;
}
/** The rules of every port the contract declares; the compiler refuses a port without one. */
type RoleRules = { [R in Role]: PerPort<R, Rule> };

/** Float ports: float32, or float16 (fp16 exports), converted at the graph boundary (onnx.ts). */
const F32: DType[] = ['float32', 'float16'];
const SIDES = ['inputs', 'outputs'] as const;
type Side = (typeof SIDES)[number];

/** The widths that flow from producer graphs to consumer graphs. */
interface Widths {
  D: number;
  E: number;
  Wt: number;
}

/** The rule of every port, from the manifest and the producers' widths. */
function portRules(m: Manifest, w: Widths): RoleRules {
  const L = m.tokenizer.max_length;
  const C = m.latent.channels;
  const lh = m.image.height / m.latent.downscale;
  const lw = m.image.width / m.latent.downscale;
  const N = m.adapter.conditioning_tokens;
  const Wc = m.adapter.conditioning_width;
  const vaeOutC = m.models.vae_encoder.output_kind === 'mean_logvar' ? 2 * C : C;
  const faceSize = m.models.face_embedder.preprocess.size;
  const clipSize = m.models.image_encoder.preprocess.size;
  const detSize = m.models.face_detector?.preprocess.size ?? 0;
  const source = {
    D: `face_embedder (${m.models.face_embedder.file}) emits ${w.D}`,
    E: `image_encoder (${m.models.image_encoder.file}) emits ${w.E}`,
    Wt: `text_encoder (${m.models.text_encoder.file}) emits ${w.Wt}`,
  };
  const detectorOutputs: Record<string, Rule> = {};
  const det = m.models.face_detector;
  det?.strides.forEach((stride, i) => {
    const grid = anchorGrid(det, i);
    for (const [output, width] of Object.entries(DETECTOR_LAYOUTS[det.layout].outputs)) {
      detectorOutputs[`${output}_${stride}`] = { dtypes: F32, shapes: [[null, grid.rows, width], [grid.rows, width]], why: { 0: grid.why, 1: grid.why } };
    }
  });
  const detInput: Dim[] = det?.preprocess.tensor_layout === 'NHWC' ? [null, detSize, detSize, 3] : [null, 3, detSize, detSize];
  const detAxes = det?.preprocess.tensor_layout === 'NHWC' ? [1, 2] : [2, 3];
  return {
    text_encoder: {
      inputs: { input_ids: { dtypes: ['int32', 'int64'], shapes: [[null, L]], why: { 1: `tokenizer.max_length is ${L}` } } },
      outputs: { hidden_states: { dtypes: F32, shapes: [[null, L, null]] } },
    },
    image_encoder: {
      inputs: { pixels: { dtypes: F32, shapes: [[null, 3, clipSize, clipSize]], why: { 2: `preprocess.size is ${clipSize}`, 3: `preprocess.size is ${clipSize}` } } },
      outputs: { embedding: { dtypes: F32, shapes: [[null, null]] } },
    },
    face_embedder: {
      inputs: { pixels: { dtypes: F32, shapes: [[null, 3, faceSize, faceSize]], why: { 2: `preprocess.size is ${faceSize}`, 3: `preprocess.size is ${faceSize}` } } },
      outputs: { embedding: { dtypes: F32, shapes: [[null, null]] } },
    },
    face_detector: {
      inputs: { pixels: { dtypes: F32, shapes: [detInput], why: Object.fromEntries(detAxes.map((a) => [a, `preprocess.size is ${detSize}`])) } },
      outputs: detectorOutputs,
    },
    adapter: {
      inputs: {
        face_embedding: { dtypes: F32, shapes: [[null, w.D]], why: { 1: source.D } },
        image_embedding: { dtypes: F32, shapes: [[null, w.E]], why: { 1: source.E } },
        text_embedding: { dtypes: F32, shapes: [[null, L, w.Wt]], why: { 1: `tokenizer.max_length is ${L}`, 2: source.Wt } },
      },
      outputs: {
        conditioning: { dtypes: F32, shapes: [[null, N, Wc]], why: { 1: `adapter.conditioning_tokens is ${N}`, 2: `adapter.conditioning_width is ${Wc}` } },
      },
    },
    unet: {
      inputs: {
        sample: { dtypes: F32, shapes: [[null, C, lh, lw]], why: { 1: `latent.channels is ${C}`, 2: `image height / downscale is ${lh}`, 3: `image width / downscale is ${lw}` } },
        timestep: { dtypes: ['float32', 'float16', 'int64'], shapes: [[], [null]] },
        encoder_hidden_states: { dtypes: F32, shapes: [[null, N, Wc]], why: { 1: `adapter.conditioning_tokens is ${N}`, 2: `adapter.conditioning_width is ${Wc}` } },
      },
      outputs: { noise: { dtypes: F32, shapes: [[null, C, lh, lw]], why: { 1: `latent.channels is ${C}` } } },
    },
    vae_encoder: {
      inputs: { pixels: { dtypes: F32, shapes: [[null, 3, m.image.height, m.image.width]], why: { 2: `image.height is ${m.image.height}`, 3: `image.width is ${m.image.width}` } } },
      outputs: { latent: { dtypes: F32, shapes: [[null, vaeOutC, lh, lw]], why: { 1: `output_kind "${m.models.vae_encoder.output_kind}" with latent.channels ${C} means ${vaeOutC}` } } },
    },
    vae_decoder: {
      inputs: { latent: { dtypes: F32, shapes: [[null, C, lh, lw]], why: { 1: `latent.channels is ${C}` } } },
      outputs: { pixels: { dtypes: F32, shapes: [[null, 3, m.image.height, m.image.width]] } },
    },
  };
}

type Resolved = Partial<Record<Role, Record<Side, Record<string, ResolvedPort>>>>;

/** Pass 1: every port the manifest maps, found among its graph's tensors by name. */
function resolvePorts(m: Manifest, graphs: Partial<Record<Role, GraphSignature>>, problems: string[]): Resolved {
  const resolved: Resolved = {};
  for (const role of ROLES) {
    const entry = m.models[role];
    const sig = graphs[role];
    if (!entry || !sig) {
      if (!OPTIONAL_ROLES.has(role)) problems.push(`${role}: no graph was opened for this required role`);
      continue;
    }
    const where = `${role} (${entry.file})`;
    const sides = { inputs: {}, outputs: {} } as Record<Side, Record<string, ResolvedPort>>;
    for (const side of SIDES) {
      const list = sig[side];
      for (const [port, name] of Object.entries(entry[side])) {
        const found = list.find((t) => t.name === name);
        if (found) sides[side][port] = found;
        else problems.push(`${where}: ${side.slice(0, -1)} port "${port}" names "${name}", but the graph's ${side} are ${list.map((t) => `"${t.name}"`).join(', ')}`);
      }
    }
    const mapped = new Set(Object.values(entry.inputs));
    for (const input of sig.inputs) {
      if (!mapped.has(input.name)) problems.push(`${where}: the graph needs input "${input.name}", which the manifest does not map to a port`);
    }
    resolved[role] = sides;
  }
  return resolved;
}

/** Pass 2: one port against its rule. */
function checkPort(label: string, p: ResolvedPort, rule: Rule, problems: string[]): void {
  if (!rule.dtypes.includes(p.dtype)) {
    problems.push(`${label} has dtype ${p.dtype}, expected ${rule.dtypes.join(' or ')}`);
    return;
  }
  const shape = rule.shapes.find((s) => s.length === p.shape.length);
  if (!shape) {
    problems.push(`${label} has rank ${p.shape.length} [${p.shape.join(', ')}], expected rank ${rule.shapes.map((s) => s.length).join(' or ')}`);
    return;
  }
  shape.forEach((want, axis) => {
    const got = p.shape[axis];
    if (want === null || want < 0 || typeof got !== 'number' || got === want) return;
    const why = rule.why?.[axis];
    problems.push(`${label} has size ${got} on axis ${axis} [${p.shape.join(', ')}], expected ${want}${why ? ` (${why})` : ''}`);
  });
}

/** Resolves and checks every role's ports; throws SignatureMismatch listing all problems. */
export function checkSignatures(manifest: Manifest, graphs: Partial<Record<Role, GraphSignature>>): ResolvedSignatures {
  const problems: string[] = [];
  const resolved = resolvePorts(manifest, graphs, problems);
  const where = (role: Role) => `${role} (${manifest.models[role]?.file ?? '?'})`;

  const producerWidth = (role: Role, port: string, axis: number, what: string): number => {
    const p = resolved[role]?.outputs[port];
    const w = p?.shape[axis];
    if (typeof w === 'number') return w;
    if (p) problems.push(`${where(role)}: ${what} "${p.name}" must have a fixed size on axis ${axis}, the graph has "${String(w)}"`);
    return -1;
  };
  const widths: Widths = {
    D: producerWidth('face_embedder', 'embedding', 1, 'face embedding'),
    E: producerWidth('image_encoder', 'embedding', 1, 'image embedding'),
    Wt: producerWidth('text_encoder', 'hidden_states', 2, 'text hidden states'),
  };

  const rules = portRules(manifest, widths);
  for (const role of ROLES) {
    const ports = resolved[role];
    if (!ports) continue;
    for (const side of SIDES) {
      const sideRules = rules[role][side] as Record<string, Rule>;
      for (const [port, p] of Object.entries(ports[side])) {
        const rule = sideRules[port];
        if (rule) checkPort(`${where(role)}: ${side.slice(0, -1)} "${p.name}" (port ${port})`, p, rule, problems);
      }
    }
  }
  if (problems.length > 0) throw new SignatureMismatch(problems);

  const m = manifest;
  return {
    // The manifest validator requires every declared port of every present role, and each was
    // resolved above without a problem: the table is complete.
    ports: resolved as BundlePorts,
    dims: {
      faceEmbedding: widths.D,
      imageEmbedding: widths.E,
      textLength: m.tokenizer.max_length,
      textWidth: widths.Wt,
      conditioningTokens: m.adapter.conditioning_tokens,
      conditioningWidth: m.adapter.conditioning_width,
      latentChannels: m.latent.channels,
      latentHeight: m.image.height / m.latent.downscale,
      latentWidth: m.image.width / m.latent.downscale,
    },
  };
}
