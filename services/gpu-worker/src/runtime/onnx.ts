// The only module that imports onnxruntime-node. Everything else passes typed arrays with their
// dimensions and reads graph signatures as plain data.

import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { DiffIdError } from '@diffid/shared/contract';
import { type ExecutionProvider } from '@diffid/shared/settings';
import { fromHalf, toHalf } from './float16.ts';
import { graphCacheEntry, type GraphCacheKey } from './graph-cache.ts';

/** Element types the pipeline can feed or read. */
export type DType = 'float32' | 'float16' | 'int32' | 'int64' | 'uint8' | 'bool' | 'string' | 'other';

/** One input or output of a graph as its metadata states it; symbolic dimensions are strings. */
export interface TensorSignature {
  name: string;
  dtype: DType;
  shape: Array<number | string>;
}

export interface GraphSignature {
  inputs: TensorSignature[];
  outputs: TensorSignature[];
}

export type TensorData = Float32Array | Int32Array | BigInt64Array | Uint16Array | Uint8Array;

/** A tensor as the rest of the worker handles it. */
export interface Tensor {
  dtype: DType;
  data: TensorData;
  dims: number[];
}

export type { ExecutionProvider };

export interface SessionOptions {
  executionProvider: ExecutionProvider;
  /** Threads for one operator; 0: defaultIntraOpThreads(). */
  intraOpThreads?: number;
  /** Open an optimized copy from this cache, or store one there (graph-cache.ts). */
  cache?: GraphCacheKey;
}

/** How a graph was opened: optimized now (`off`: no cache asked), from the cache, or optimized and stored there. */
export type CacheStatus = 'off' | 'hit' | 'stored';

/**
 * An opened graph. `run` takes and gives float32 for a graph's float16 ports too: fp16 graphs are
 * converted at their boundary (float16.ts), so the pipeline's math stays in float32.
 */
export interface Graph {
  readonly path: string;
  readonly signature: GraphSignature;
  readonly cache: CacheStatus;
  /**
   * Runs the graph. `into` names float32 outputs to be written into the caller's own buffers
   * (their dims must be the output's): a loop that runs a graph many times reads every result in
   * the same place. The result's tensor for such an output is the caller's.
   */
  run(feeds: Record<string, Tensor>, into?: Record<string, Tensor>): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

const KNOWN_DTYPES = new Set<string>(['float32', 'float16', 'int32', 'int64', 'uint8', 'bool', 'string']);

function toSignature(meta: readonly ort.InferenceSession.ValueMetadata[]): TensorSignature[] {
  return meta.map((m) => {
    if (!m.isTensor) return { name: m.name, dtype: 'other', shape: [] };
    const shape = m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : String(d)));
    return { name: m.name, dtype: KNOWN_DTYPES.has(m.type) ? (m.type as DType) : 'other', shape };
  });
}

/**
 * The execution providers usable here. The binding lists CUDA on every Linux x64 build but ships
 * its library only when the install step fetched it (ONNXRUNTIME_NODE_INSTALL=cuda12).
 */
export function availableProviders(): ExecutionProvider[] {
  const out: ExecutionProvider[] = ['cpu'];
  const cuda = ort.listSupportedBackends().find((b) => b.name === 'cuda');
  if (cuda && (cuda.bundled || cudaLibraryInstalled())) out.push('cuda');
  return out;
}

function cudaLibraryInstalled(): boolean {
  const root = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
  const bin = join(root, 'bin');
  if (!existsSync(bin)) return false;
  return readdirSync(bin).some((napi) => existsSync(join(bin, napi, process.platform, process.arch, 'libonnxruntime_providers_cuda.so')));
}

/**
 * One fewer operator thread than the machine has cores (at least one): the worker's main thread
 * and the JavaScript between graphs on the inference thread need a core of their own. On the
 * 2-core dev machine this (1) made the default bundle's jobs 10–24 % faster end to end than
 * onnxruntime's own choice or 2 (docs/benchmarks.md).
 */
export function defaultIntraOpThreads(): number {
  return Math.max(1, availableParallelism() - 1);
}

// Time with a session.run in flight on this thread, counted once however many overlap: the
// denominator of "how much of a job is onnxruntime's".
let running = 0;
let busySince = 0;
let busyTotal = 0;

/** Milliseconds this thread has spent with at least one `session.run` in flight, since it started. */
export function onnxruntimeBusyMs(): number {
  return busyTotal + (running > 0 ? performance.now() - busySince : 0);
}

/** onnxruntime-node's version: cached graphs are specific to it. */
function runtimeVersion(): string {
  return (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
}

async function createSession(path: string, options: SessionOptions): Promise<{ session: ort.InferenceSession; cache: CacheStatus }> {
  const base: ort.InferenceSession.SessionOptions = {
    executionProviders: [options.executionProvider],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: options.intraOpThreads || defaultIntraOpThreads(),
    // With its memory pattern on, onnxruntime keeps the first run's allocations and then one block
    // planned from them: a graph's activations twice over. Off, the full-size U-Net held 1.1 GB
    // per row at 512 px instead of 2.2, and ran as fast (docs/full-size.md).
    enableMemPattern: false,
  };
  if (!options.cache) return { session: await ort.InferenceSession.create(path, base), cache: 'off' };
  const entry = await graphCacheEntry(options.cache, options.executionProvider, runtimeVersion());
  if (entry.hit) {
    try {
      return { session: await ort.InferenceSession.create(entry.hit, { ...base, graphOptimizationLevel: 'disabled' }), cache: 'hit' };
    } catch {
      await entry.discard(); // unreadable: optimized again below, and stored afresh
    }
  }
  const storing = await ort.InferenceSession.create(path, {
    ...base,
    optimizedModelFilePath: await entry.stage(),
    // Every weight in a side file: a U-Net's are over protobuf's 2 GB. Error-level logging only:
    // onnxruntime warns that the CPU's optimized graph is specific to its hardware, which the
    // cache key covers.
    extra: { session: { optimized_model_external_initializers_file_name: entry.dataFile, optimized_model_external_initializers_min_size_in_bytes: '1024' } },
    logSeverityLevel: 3,
  });
  await entry.publish();
  // The session that stored the entry keeps its optimizer's copies of the weights (the full-size
  // bundle's sessions held 8.2 GB for 5.8 GB of weights); the stored graph opens with its weights
  // mapped from the file, as on every later start, and is checked to open at once.
  try {
    const session = await ort.InferenceSession.create(entry.path, { ...base, graphOptimizationLevel: 'disabled' });
    await storing.release();
    return { session, cache: 'stored' };
  } catch {
    await entry.discard();
    return { session: storing, cache: 'off' };
  }
}

/** Opens a graph file with the requested execution provider; fails clearly when it is absent. */
export async function openGraph(path: string, options: SessionOptions): Promise<Graph> {
  if (!availableProviders().includes(options.executionProvider)) {
    throw new DiffIdError(
      'EXECUTION_PROVIDER_UNAVAILABLE',
      `execution provider "${options.executionProvider}" is not in this onnxruntime-node build (it has: ${availableProviders().join(', ')}). ` +
        'On GPU hosts install the CUDA provider (ONNXRUNTIME_NODE_INSTALL=cuda12, see deploy/docker/gpu-worker.Dockerfile) or set DIFFID_EXECUTION_PROVIDER=cpu.',
    );
  }
  const { session, cache } = await createSession(path, options);
  const signature: GraphSignature = { inputs: toSignature(session.inputMetadata), outputs: toSignature(session.outputMetadata) };
  const halfInputs = new Set(signature.inputs.filter((i) => i.dtype === 'float16').map((i) => i.name));
  const halfOutputs = new Set(signature.outputs.filter((o) => o.dtype === 'float16').map((o) => o.name));
  return {
    path,
    signature,
    cache,
    async run(feeds, into = {}) {
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(feeds)) {
        // An fp16 input is fed from the pipeline's float32, converted here and nowhere else.
        if (t.dtype === 'float32' && halfInputs.has(name)) ortFeeds[name] = new ort.Tensor('float16', toHalf(t.data as Float32Array), t.dims);
        else ortFeeds[name] = new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.dims);
      }
      // onnxruntime writes a preallocated output in place; an fp16 one is converted into it below.
      const fetches: Record<string, ort.Tensor | null> = {};
      for (const o of signature.outputs) {
        const t = into[o.name];
        fetches[o.name] = t && !halfOutputs.has(o.name) ? new ort.Tensor('float32', t.data as Float32Array, t.dims) : null;
      }
      if (running++ === 0) busySince = performance.now();
      let results: ort.InferenceSession.ReturnType;
      try {
        results = await session.run(ortFeeds, fetches);
      } finally {
        if (--running === 0) busyTotal += performance.now() - busySince;
      }
      const out: Record<string, Tensor> = {};
      for (const [name, value] of Object.entries(results)) {
        const given = into[name];
        if (given) {
          if (value.type === 'float16') (given.data as Float32Array).set(fromHalf(value.data as Uint16Array));
          out[name] = given;
          continue;
        }
        out[name] =
          value.type === 'float16'
            ? { dtype: 'float32', data: fromHalf(value.data as Uint16Array), dims: [...value.dims] }
            : { dtype: value.type as DType, data: value.data as TensorData, dims: [...value.dims] };
      }
      return out;
    },
    release: () => session.release(),
  };
}
