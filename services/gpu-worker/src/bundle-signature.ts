// Checks a manifest against the graphs' own metadata: names, dtypes, ranks and fixed dimensions.
// Cross-graph widths (face embedding D, CLIP image embedding E, text width) are read from the
// graph that produces them and required of the graphs that consume them.

import { ROLES, type Manifest, type Role } from '@diffid/shared';
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

export interface ResolvedSignatures {
  ports: Partial<Record<Role, { inputs: Record<string, ResolvedPort>; outputs: Record<string, ResolvedPort> }>>;
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
interface Rule {
  dtypes: DType[];
  /** Allowed shapes; a rank not listed is a mismatch. */
  shapes: Dim[][];
}

const F32: DType[] = ['float32'];

function fixedWidth(port: ResolvedPort | undefined, axis: number): number | null {
  const d = port?.shape[axis];
  return typeof d === 'number' ? d : null;
}

/** Resolves and checks every role's ports; throws SignatureMismatch listing all problems. */
export function checkSignatures(manifest: Manifest, graphs: Partial<Record<Role, GraphSignature>>): ResolvedSignatures {
  const problems: string[] = [];
  const ports: ResolvedSignatures['ports'] = {};
  const where = (role: Role) => `${role} (${manifest.models[role]?.file ?? '?'})`;

  for (const role of ROLES) {
    const entry = manifest.models[role];
    const sig = graphs[role];
    if (!entry || !sig) continue;
    const resolve = (side: 'inputs' | 'outputs', list: TensorSignature[]) => {
      const out: Record<string, ResolvedPort> = {};
      for (const [port, name] of Object.entries(entry[side])) {
        const found = list.find((t) => t.name === name);
        if (!found) {
          problems.push(`${where(role)}: ${side.slice(0, -1)} port "${port}" names "${name}", but the graph's ${side} are ${list.map((t) => `"${t.name}"`).join(', ')}`);
        } else {
          out[port] = found;
        }
      }
      return out;
    };
    ports[role] = { inputs: resolve('inputs', sig.inputs), outputs: resolve('outputs', sig.outputs) };
    const mapped = new Set(Object.values(entry.inputs));
    for (const input of sig.inputs) {
      if (!mapped.has(input.name)) problems.push(`${where(role)}: the graph needs input "${input.name}", which the manifest does not map to a port`);
    }
  }

  const m = manifest;
  const L = m.tokenizer.max_length;
  const f = m.latent.downscale;
  const C = m.latent.channels;
  const lh = m.image.height / f;
  const lw = m.image.width / f;
  const width = (role: Role, side: 'inputs' | 'outputs', port: string, axis: number, what: string): number => {
    const p = ports[role]?.[side][port];
    const w = fixedWidth(p, axis);
    if (p && w === null) problems.push(`${where(role)}: ${what} "${p.name}" must have a fixed size on axis ${axis}, the graph has "${String(p.shape[axis])}"`);
    return w ?? -1;
  };
  const D = width('face_embedder', 'outputs', 'embedding', 1, 'face embedding');
  const E = width('image_encoder', 'outputs', 'embedding', 1, 'image embedding');
  const Wt = width('text_encoder', 'outputs', 'hidden_states', 2, 'text hidden states');
  const N = m.adapter.conditioning_tokens;
  const Wc = m.adapter.conditioning_width;
  const vaeOutC = m.models.vae_encoder.output_kind === 'mean_logvar' ? 2 * C : C;
  const faceSize = m.models.face_embedder.preprocess.size;
  const clipSize = m.models.image_encoder.preprocess.size;

  // Who produces a width, for messages about its consumers.
  const source = {
    D: `face_embedder (${m.models.face_embedder.file}) emits ${D}`,
    E: `image_encoder (${m.models.image_encoder.file}) emits ${E}`,
    Wt: `text_encoder (${m.models.text_encoder.file}) emits ${Wt}`,
  };
  const rules: Partial<Record<Role, { inputs: Record<string, Rule & { why?: Record<number, string> }>; outputs: Record<string, Rule & { why?: Record<number, string> }> }>> = {
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
    adapter: {
      inputs: {
        face_embedding: { dtypes: F32, shapes: [[null, D]], why: { 1: source.D } },
        image_embedding: { dtypes: F32, shapes: [[null, E]], why: { 1: source.E } },
        text_embedding: { dtypes: F32, shapes: [[null, L, Wt]], why: { 1: `tokenizer.max_length is ${L}`, 2: source.Wt } },
      },
      outputs: {
        conditioning: { dtypes: F32, shapes: [[null, N, Wc]], why: { 1: `adapter.conditioning_tokens is ${N}`, 2: `adapter.conditioning_width is ${Wc}` } },
      },
    },
    unet: {
      inputs: {
        sample: { dtypes: F32, shapes: [[null, C, lh, lw]], why: { 1: `latent.channels is ${C}`, 2: `image height / downscale is ${lh}`, 3: `image width / downscale is ${lw}` } },
        timestep: { dtypes: ['float32', 'int64'], shapes: [[], [null]] },
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
  const det = m.models.face_detector;
  if (det) {
    const outputs: Record<string, Rule> = {};
    for (const s of det.strides) {
      outputs[`score_${s}`] = { dtypes: F32, shapes: [[null, null, 1], [null, 1]] };
      outputs[`bbox_${s}`] = { dtypes: F32, shapes: [[null, null, 4], [null, 4]] };
      outputs[`kps_${s}`] = { dtypes: F32, shapes: [[null, null, 10], [null, 10]] };
    }
    rules.face_detector = {
      inputs: { pixels: { dtypes: F32, shapes: [[null, 3, det.preprocess.size, det.preprocess.size]], why: { 2: `preprocess.size is ${det.preprocess.size}` } } },
      outputs,
    };
  }

  for (const role of ROLES) {
    const r = rules[role];
    const resolved = ports[role];
    if (!r || !resolved) continue;
    for (const side of ['inputs', 'outputs'] as const) {
      for (const [port, rule] of Object.entries(r[side])) {
        const p = resolved[side][port];
        if (!p) continue;
        const label = `${where(role)}: ${side.slice(0, -1)} "${p.name}" (port ${port})`;
        if (!rule.dtypes.includes(p.dtype)) {
          problems.push(`${label} has dtype ${p.dtype}, expected ${rule.dtypes.join(' or ')}`);
          continue;
        }
        const shape = rule.shapes.find((s) => s.length === p.shape.length);
        if (!shape) {
          problems.push(`${label} has rank ${p.shape.length} [${p.shape.join(', ')}], expected rank ${rule.shapes.map((s) => s.length).join(' or ')}`);
          continue;
        }
        shape.forEach((want, axis) => {
          const got = p.shape[axis];
          if (want === null || want < 0 || typeof got !== 'number') return;
          if (got !== want) {
            const why = rule.why?.[axis];
            problems.push(`${label} has size ${got} on axis ${axis} [${p.shape.join(', ')}], expected ${want}${why ? ` (${why})` : ''}`);
          }
        });
      }
    }
  }
  if (problems.length > 0) throw new SignatureMismatch(problems);
  return {
    ports,
    dims: {
      faceEmbedding: D,
      imageEmbedding: E,
      textLength: L,
      textWidth: Wt,
      conditioningTokens: N,
      conditioningWidth: Wc,
      latentChannels: C,
      latentHeight: lh,
      latentWidth: lw,
    },
  };
}
