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

/** Rows of `size` values each, end to end in one array. */
export function concatRows(rows: ArrayLike<number>[], size: number): Float32Array {
  const data = new Float32Array(rows.length * size);
  rows.forEach((r, i) => data.set(r, i * size));
  return data;
}

function batchOf(rows: Array<Float32Array | Int32Array>, port: ResolvedPort, rowDims: number[]): Tensor {
  const size = rowDims.reduce((a, b) => a * b, 1);
  const dims = [rows.length, ...rowDims];
  // float16 ports take float32 here: the graph converts at its boundary (onnx.ts).
  if (port.dtype === 'float32' || port.dtype === 'float16') return { dtype: 'float32', data: concatRows(rows, size), dims };
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

/** True when the graph accepts any batch size on this port. */
function dynamicBatch(port: ResolvedPort): boolean {
  return typeof port.shape[0] !== 'number';
}

/**
 * Runs `graph` over rows (all feeds must have the same row count) and returns, per requested
 * output, one Float32Array per row.
 */
export async function runRows(graph: Graph, feeds: RowFeed[], outputs: ResolvedPort[], fixed: FixedFeed[] = []): Promise<Float32Array[][]> {
  const count = feeds[0]?.rows.length ?? 0;
  if (feeds.some((f) => f.rows.length !== count)) throw new Error(`${graph.path}: feeds differ in row count`);
  const oneAtATime = feeds.some((f) => !dynamicBatch(f.port));
  const groups = oneAtATime ? Array.from({ length: count }, (_, i) => [i]) : [Array.from({ length: count }, (_, i) => i)];
  const result: Float32Array[][] = outputs.map(() => []);
  for (const group of groups) {
    const tensors: Record<string, Tensor> = {};
    for (const f of feeds) tensors[f.port.name] = batchOf(group.map((i) => f.rows[i] as Float32Array | Int32Array), f.port, f.rowDims);
    for (const f of fixed) tensors[f.port.name] = f.tensor;
    const out = await graph.run(tensors);
    outputs.forEach((port, k) => {
      const t = out[port.name];
      if (!t || !(t.data instanceof Float32Array)) throw new Error(`${graph.path}: output "${port.name}" missing or not float32`);
      const size = t.data.length / group.length;
      // Views, not copies: the output is this call's own, read once by the stage.
      for (let j = 0; j < group.length; j++) (result[k] as Float32Array[]).push(t.data.subarray(j * size, (j + 1) * size));
    });
  }
  return result;
}
