// onnxruntime's optimized-graph cache. Opening a large graph costs its graph optimizations every
// time (the full-size U-Net: 5.5–6 s of its CPU session's creation here, docs/full-size.md);
// onnxruntime can write the optimized graph out and open that one later without optimizing
// again (1.4 s). What it writes is specific to the onnxruntime version, the execution provider and,
// on the CPU, the instruction set (its NCHWc layouts), so all of them are in an entry's key with
// the source files' sha256. An entry is written to a folder of its own and renamed into place
// whole, so a reader never sees half of one and two workers writing the same entry do not mix.
//
// The cache is as trusted as the bundle: the worker keeps it where only it writes
// (DIFFID_GRAPH_CACHE_DIR). Entries are checked against the sizes recorded with them, not hashed
// again: that would cost what the cache saves.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { arch, cpus } from 'node:os';
import { join } from 'node:path';

/** Graphs smaller than this (graph and weight files together) open fast enough uncached. */
export const GRAPH_CACHE_MIN_BYTES = 8 * 2 ** 20;

const MODEL = 'model.onnx';
const DATA = 'model.onnx.data';
const META = 'entry.json';

/** What a cached graph is derived from and for. */
export interface GraphCacheKey {
  /** The cache folder. */
  dir: string;
  /** sha256 of the graph file and of each of its weight files, as the manifest lists them. */
  sources: string[];
}

/** Where one graph's cached, optimized copy is, and how to store it. */
export interface GraphCacheEntry {
  /** The cached graph when the entry is complete, else null. */
  readonly hit: string | null;
  /** Where the cached graph is once published. */
  readonly path: string;
  /** Makes a folder for onnxruntime to write the optimized graph into; returns the graph's path there (its weights go beside it, named `dataFile`). */
  stage(): Promise<string>;
  readonly dataFile: string;
  /** Moves the staged files into place; a failure leaves no entry (the cache is an optimisation). */
  publish(): Promise<void>;
  /** Drops the entry (one onnxruntime could not open) and anything staged. */
  discard(): Promise<void>;
}

/** The CPU's instruction set as the kernel reports it: onnxruntime's CPU layouts depend on it. */
function cpuFeatures(): string {
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    return /^flags\s*:\s*(.*)$/m.exec(info)?.[1] ?? cpus()[0]?.model ?? '';
  } catch {
    return cpus()[0]?.model ?? '';
  }
}

/**
 * The cache entry of a graph opened with `provider` by onnxruntime `runtime` (its version).
 * Nothing is created until `publish`.
 */
export async function graphCacheEntry(key: GraphCacheKey, provider: string, runtime: string): Promise<GraphCacheEntry> {
  const id = createHash('sha256')
    .update(JSON.stringify({ sources: key.sources, provider, runtime, arch: arch(), cpu: provider === 'cpu' ? cpuFeatures() : '' }))
    .digest('hex')
    .slice(0, 32);
  const final = join(key.dir, id);
  const staging = join(key.dir, `.${id}.${process.pid}.${Date.now()}`);
  const hit = await complete(final);
  return {
    hit: hit ? join(final, MODEL) : null,
    path: join(final, MODEL),
    async stage() {
      await mkdir(staging, { recursive: true });
      return join(staging, MODEL);
    },
    dataFile: DATA,
    async publish() {
      try {
        const sizes = { model: (await stat(join(staging, MODEL))).size, data: existsSync(join(staging, DATA)) ? (await stat(join(staging, DATA))).size : 0 };
        await writeFile(join(staging, META), JSON.stringify({ sizes, provider, runtime, sources: key.sources }));
        await rename(staging, final);
      } catch {
        // Another worker published it first, or the disk is full or read-only.
      }
      await rm(staging, { recursive: true, force: true });
    },
    async discard() {
      await rm(final, { recursive: true, force: true });
      await rm(staging, { recursive: true, force: true });
    },
  };
}

async function complete(dir: string): Promise<boolean> {
  try {
    const meta = JSON.parse(await readFile(join(dir, META), 'utf8')) as { sizes: { model: number; data: number } };
    if ((await stat(join(dir, MODEL))).size !== meta.sizes.model) return false;
    return meta.sizes.data === 0 || (await stat(join(dir, DATA))).size === meta.sizes.data;
  } catch {
    return false;
  }
}
