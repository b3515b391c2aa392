// Feeding graphs row by row: builds batched tensors in the dtype each port declares, runs once per
// batch (or once per row where the graph fixes its batch at 1), and splits outputs back into rows.

import type { ResolvedPort } from './bundle-signature.ts';
import type { Graph, Tensor } from './onnx.ts';

/** One batched input: a row per item, each of `rowDims`. */
export interface RowFeed {
  port: ResolvedPort;
  rows: Array<Float32Array | Int32Array>;
  rowDims: number[];
}

/** An input fed unchanged to every call (a scalar timestep, say). */
export interface FixedFeed {
  port: ResolvedPort;
  tensor: Tensor;
}

function batchOf(rows: Array<Float32Array | Int32Array>, port: ResolvedPort, rowDims: number[]): Tensor {
  const size = rowDims.reduce((a, b) => a * b, 1);
  const dims = [rows.length, ...rowDims];
  // float16 ports take float32 here: the graph converts at its boundary (onnx.ts).
  if (port.dtype === 'float32' || port.dtype === 'float16') {
    // One row (runRows checked its length) is the batch: no copy.
    const [only] = rows;
    if (rows.length === 1 && only instanceof Float32Array) return { dtype: 'float32', data: only, dims };
    const data = new Float32Array(rows.length * size);
    rows.forEach((r, i) => data.set(r, i * size));
    return { dtype: 'float32', data, dims };
  }
  if (port.dtype === 'int32' || port.dtype === 'int64') {
    const data = port.dtype === 'int32' ? new Int32Array(rows.length * size) : new BigInt64Array(rows.length * size);
    rows.forEach((r, i) => {
      for (let k = 0; k < size; k++) {
        const v = r[k] as number;
        if (data instanceof BigInt64Array) data[i * size + k] = BigInt(Math.trunc(v));
        else data[i * size + k] = v;
      }
    });
    return { dtype: port.dtype, data, dims };
  }
  throw new Error(`port "${port.name}" has dtype ${port.dtype}, which the pipeline does not feed`);
}

/** True when the graph accepts any batch size on this port (a scalar port has no batch to fix). */
export function dynamicBatch(port: ResolvedPort): boolean {
  return typeof port.shape[0] !== 'number';
}

/**
 * Runs `graph` over rows (all feeds must have the same row count) and returns, per requested
 * output, one Float32Array per row. Calls of one graph that jobs on this thread issue in the same
 * turn are made as one batched call (see `coalescerOf`); a graph that fixes its batch at 1 runs
 * row by row.
 */
export async function runRows(graph: Graph, feeds: RowFeed[], outputs: ResolvedPort[], fixed: FixedFeed[] = []): Promise<Float32Array[][]> {
  const count = feeds[0]?.rows.length ?? 0;
  if (feeds.some((f) => f.rows.length !== count)) throw new Error(`${graph.path}: feeds differ in row count`);
  // Checked per call, so that a wrong row fails its own job, never a batch it would have joined.
  for (const f of feeds) {
    const size = f.rowDims.reduce((x, y) => x * y, 1);
    if (f.rows.some((r) => r.length !== size)) throw new Error(`${graph.path}: a row of "${f.port.name}" is not ${size} values`);
  }
  if (count === 0) return outputs.map(() => []);
  if (feeds.some((f) => !dynamicBatch(f.port))) {
    const result: Float32Array[][] = outputs.map(() => []);
    for (let i = 0; i < count; i++) {
      const one = await runBatch(graph, feeds.map((f) => ({ ...f, rows: [f.rows[i] as Float32Array | Int32Array] })), outputs, fixed);
      one.forEach((rows, k) => (result[k] as Float32Array[]).push(...rows));
    }
    return result;
  }
  return coalescerOf(graph).submit({ feeds, outputs, fixed, count });
}

/** One call over all the rows of `feeds`. */
async function runBatch(graph: Graph, feeds: RowFeed[], outputs: ResolvedPort[], fixed: FixedFeed[]): Promise<Float32Array[][]> {
  const count = feeds[0]?.rows.length ?? 0;
  const tensors: Record<string, Tensor> = {};
  for (const f of feeds) tensors[f.port.name] = batchOf(f.rows, f.port, f.rowDims);
  for (const f of fixed) tensors[f.port.name] = f.tensor;
  const out = await graph.run(tensors);
  return outputs.map((port) => {
    const t = out[port.name];
    if (!t || !(t.data instanceof Float32Array)) throw new Error(`${graph.path}: output "${port.name}" missing or not float32`);
    const size = t.data.length / count;
    // Views, not copies: the output is this call's own, read once by the stage.
    return Array.from({ length: count }, (_, j) => (t.data as Float32Array).subarray(j * size, (j + 1) * size));
  });
}

interface Request {
  feeds: RowFeed[];
  outputs: ResolvedPort[];
  fixed: FixedFeed[];
  count: number;
}

interface Coalescer {
  submit(request: Request): Promise<Float32Array[][]>;
}

// One per graph on this thread. Jobs that run together (DIFFID_BATCH_JOBS) often reach the same
// graph in the same turn — jobs started together encode their prompts together, jobs that left
// the U-Net batch at the same step decode together — and on a GPU one call of several rows costs
// about what a call of one does. A lone call waits only for the current turn to end.
const coalescers = new WeakMap<Graph, Coalescer>();

function coalescerOf(graph: Graph): Coalescer {
  let c = coalescers.get(graph);
  if (!c) coalescers.set(graph, (c = coalescer(graph)));
  return c;
}

/** What must match for two calls to be one: the same ports, row shapes, outputs and fixed feeds. */
function keyOf(r: Request): string {
  const fixed = r.fixed.map((f) => `${f.port.name}=${f.tensor.dtype}[${f.tensor.dims.join(',')}]${Array.from(f.tensor.data as ArrayLike<number | bigint>, String).join(',')}`);
  return [...r.feeds.map((f) => `${f.port.name}:${f.rowDims.join('x')}`), '→', ...r.outputs.map((o) => o.name), '|', ...fixed].join(' ');
}

function coalescer(graph: Graph): Coalescer {
  let pending: Array<Request & { key: string; resolve: (r: Float32Array[][]) => void; reject: (e: unknown) => void }> = [];
  const flush = async () => {
    const taken = pending;
    pending = [];
    for (const key of new Set(taken.map((r) => r.key))) {
      const group = taken.filter((r) => r.key === key);
      const first = group[0] as (typeof group)[number];
      try {
        const merged = first.feeds.map((f, i) => ({ ...f, rows: group.flatMap((r) => (r.feeds[i] as RowFeed).rows) }));
        const rows = await runBatch(graph, merged, first.outputs, first.fixed);
        let at = 0;
        for (const r of group) {
          r.resolve(rows.map((perOutput) => perOutput.slice(at, at + r.count)));
          at += r.count;
        }
      } catch (err) {
        for (const r of group) r.reject(err);
      }
    }
  };
  return {
    submit(request) {
      return new Promise((resolve, reject) => {
        if (pending.length === 0) setImmediate(() => void flush());
        pending.push({ ...request, key: keyOf(request), resolve, reject });
      });
    },
  };
}

/** A timestep for a scalar port, in the port's dtype. */
export function scalarTimestep(port: ResolvedPort, t: number): Tensor {
  return port.dtype === 'int64' ? { dtype: 'int64', data: new BigInt64Array([BigInt(t)]), dims: [] } : { dtype: 'float32', data: new Float32Array([t]), dims: [] };
}
