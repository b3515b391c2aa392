// The worker's memory as a formula, so that DIFFID_BATCH_JOBS and DIFFID_MAX_BATCH are bounded by
// what a device holds rather than guessed:
//
//   memory(R) = weights + fixed(S) + R × row(S)
//
// for U-Net calls of R rows at image side S (latent side L = S/8), e bytes per activation value:
//   row(S)   = 2 · heads · e · (L²)²  +  5000 · e · L²     one U-Net row: the scores and
//              probabilities of its full-resolution self-attention, plus its feature maps
//   fixed(S) = 2 · e · (L²)² + 900 · e · S²               the VAE decoding one image
//            + 2 × (2 · e · (L²)² + 250 · e · S²)          the VAE encoding two (a morph's pair)
//            + 1 GiB                                       runtime, heaps, the small graphs
// Every graph keeps the memory of its largest call (onnxruntime's arena), so these add up.
// The attention terms follow from the architecture (SD 1.5: 8 heads at every level; the VAE: one
// head in its middle block); the per-value constants are fits to this machine's measurements of
// the full-size graphs at 256 and 512 px with onnxruntime's CPU provider (docs/full-size.md).

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';

/** SD 1.5's U-Net: 8 attention heads at every level (its `attention_head_dim`). */
const UNET_HEADS = 8;
/** Feature-map values one U-Net row keeps per latent pixel (measured). */
const UNET_VALUES_PER_LATENT = 5000;
/** Values the VAE decoder keeps per output pixel, and the encoder per input pixel (measured). */
const VAE_DECODER_VALUES_PER_PIXEL = 900;
const VAE_ENCODER_VALUES_PER_PIXEL = 250;
const RUNTIME_BYTES = 2 ** 30;
const MB = 2 ** 20;

export interface MemoryPlanInput {
  /** Bytes of the bundle's graph and weight files. */
  weightBytes: number;
  /** The U-Net's ports are float16 (a float16 bundle). */
  float16: boolean;
  executionProvider: string;
  /** Image side in pixels (the larger one). */
  imageSide: number;
  /** What the worker may use, in MB (DIFFID_MEMORY_MB or what the machine has); null: unknown. */
  budgetMb: number | null;
}

/** The formula's terms at one bundle's size, in MB, and the U-Net rows per call a budget holds. */
export interface MemoryPlan {
  weights_mb: number;
  fixed_mb: number;
  row_mb: number;
  budget_mb: number | null;
  /** Rows of one U-Net call that fit in the budget; null when the budget is unknown. */
  max_rows: number | null;
}

/**
 * The formula at a bundle's size. A float16 bundle on the CUDA provider keeps float16 weights and
 * activations; on the CPU, onnxruntime computes it in float32 and holds float32 weights beside
 * the file's float16 ones.
 */
export function memoryPlan(input: MemoryPlanInput): MemoryPlan {
  const halfOnDevice = input.float16 && input.executionProvider !== 'cpu';
  const e = halfOnDevice ? 2 : 4;
  const weights = input.float16 && !halfOnDevice ? 2 * input.weightBytes : input.weightBytes;
  const S = input.imageSide;
  const L2 = (S / 8) ** 2;
  const attention = (heads: number) => 2 * heads * e * L2 * L2;
  const row = attention(UNET_HEADS) + UNET_VALUES_PER_LATENT * e * L2;
  const fixed = attention(1) + VAE_DECODER_VALUES_PER_PIXEL * e * S * S + 2 * (attention(1) + VAE_ENCODER_VALUES_PER_PIXEL * e * S * S) + RUNTIME_BYTES;
  const plan = { weights_mb: weights / MB, fixed_mb: fixed / MB, row_mb: row / MB, budget_mb: input.budgetMb };
  if (input.budgetMb === null) return { ...plan, max_rows: null };
  return { ...plan, max_rows: Math.max(0, Math.floor((input.budgetMb - plan.weights_mb - plan.fixed_mb) / plan.row_mb)) };
}

/** memory(R) of a plan, in MB. */
export function plannedMb(plan: MemoryPlan, rows: number): number {
  return plan.weights_mb + plan.fixed_mb + rows * plan.row_mb;
}

/**
 * What this worker may use when DIFFID_MEMORY_MB is unset: on the CPU the machine's memory (or
 * its cgroup's limit, in a container); on CUDA the GPU's memory as nvidia-smi reports it; null
 * when it cannot be told.
 */
export function deviceMemoryMb(executionProvider: string): number | null {
  if (executionProvider === 'cpu') {
    let limit = totalmem();
    try {
      const cgroup = readFileSync('/sys/fs/cgroup/memory.max', 'utf8').trim();
      if (/^\d+$/.test(cgroup)) limit = Math.min(limit, Number(cgroup));
    } catch {
      // not in a cgroup v2 container
    }
    return Math.floor(limit / MB);
  }
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=memory.total', '--format=csv,noheader,nounits', '--id=0'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] });
    const mib = Number.parseInt(out.trim(), 10); // nvidia-smi counts in MiB
    return Number.isFinite(mib) && mib > 0 ? mib : null;
  } catch {
    return null;
  }
}
