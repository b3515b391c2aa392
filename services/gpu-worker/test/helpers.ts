// Test helpers: temporary bundles and deterministic feeds.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { gaussianNoise } from '@diffid/shared/diffusion';
import { type Manifest, type Role } from '@diffid/shared/bundle';
import type { MorphParams } from '@diffid/shared/contract';
import { buildTinyBundle, writeBundle, type TinyOptions } from '@diffid/gpu-worker';
import { sha256Hex, type ResolvedPort, type Tensor } from '@diffid/gpu-worker/internals';

/** A morph's parameters: those given, the rest at the defaults the API settles (openapi.yaml's MorphForm). */
export function morphParams(params: Pick<MorphParams, 'alphas' | 'steps'> & Partial<MorphParams>): MorphParams {
  return { strategy: 'slerp', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal', prompt: '', seed: 0, pacing: 'linear', background: 'morph', animation: [], fps: 12, boomerang: false, ...params };
}

/** A fresh directory removed when the test ends. */
export async function tempDir(t: Test, prefix = 'diffid-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes a tiny bundle into a fresh directory. */
export async function tinyBundleDir(t: Test, options: TinyOptions = {}): Promise<string> {
  const dir = await tempDir(t, 'diffid-tiny-');
  await writeBundle(dir, buildTinyBundle(options));
  return dir;
}

export async function readManifestJson(dir: string): Promise<Manifest> {
  return JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
}

export async function writeManifestJson(dir: string, manifest: unknown): Promise<void> {
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
}

/** Replaces a role's graph file and updates its sha256, so only the graph itself differs. */
export async function replaceGraph(dir: string, role: Role, bytes: Uint8Array): Promise<void> {
  const m = await readManifestJson(dir);
  const entry = m.models[role];
  if (!entry) throw new Error(`no ${role} in manifest`);
  await writeFile(join(dir, entry.file), bytes);
  entry.sha256 = sha256Hex(bytes);
  await writeManifestJson(dir, m);
}

/** A deterministic feed for a port: symbolic dimensions become `batch`, or the sizes given. */
export function feedFor(port: ResolvedPort, seed: number, sizes: Record<string, number> = {}, batch = 2): Tensor {
  const dims = port.shape.map((d) => (typeof d === 'number' ? d : (sizes[d] ?? batch)));
  const n = dims.reduce((a, b) => a * b, 1);
  if (port.dtype === 'float32') return { dtype: 'float32', data: gaussianNoise(seed, n), dims };
  if (port.dtype === 'int32') return { dtype: 'int32', data: Int32Array.from({ length: n }, (_, i) => (i * 7 + seed) % 500), dims };
  if (port.dtype === 'int64') return { dtype: 'int64', data: BigInt64Array.from({ length: n }, (_, i) => BigInt((i * 7 + seed) % 500)), dims };
  throw new Error(`no feed for dtype ${port.dtype}`);
}

/** Mean, std, and `probe` = mean of x_i·sin(i), which moves when values move between positions. */
export function stats(data: ArrayLike<number>): { mean: number; std: number; probe: number } {
  let s = 0;
  let p = 0;
  for (let i = 0; i < data.length; i++) {
    s += data[i] as number;
    p += (data[i] as number) * Math.sin(i);
  }
  const mean = s / data.length;
  let v = 0;
  for (let i = 0; i < data.length; i++) v += ((data[i] as number) - mean) ** 2;
  return { mean, std: Math.sqrt(v / data.length), probe: p / data.length };
}

/**
 * A float32 x whose float32 (x/2 + 0.5)·255 is exactly k + 0.5 — a tie for the rounding of VAE
 * output to bytes — found by walking float32 neighbours of the real solution (none for small k).
 */
export function roundingTie(k: number): number {
  const f = Math.fround;
  const cell = new Float32Array(1);
  const bits = new Int32Array(cell.buffer);
  cell[0] = (2 * (k + 0.5)) / 255 - 1;
  const start = bits[0] as number;
  for (let d = 0; d < 4096; d++) {
    for (const s of [1, -1]) {
      bits[0] = start + s * d;
      const x = cell[0] as number;
      if (f(f(f(x * 0.5) + 0.5) * 255) === k + 0.5) return x;
    }
  }
  throw new Error(`no float32 lands exactly on ${k} + 0.5`);
}
