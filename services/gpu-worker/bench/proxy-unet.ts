// A U-Net that costs what a GPU's does at small batches: most of a call's time goes to reading a
// large weight tensor once per call, whatever the rows (a stand-in for the weight reads that bound
// a GPU U-Net at small batches), plus a small matrix product per row. measureProxy reports its
// cost by rows, so the batching figures can be read against it.
// The output is the sample scaled by 0.999 plus both terms times 0: onnxruntime still computes
// them (it does not fold a product with a value it cannot see), and every row's output depends on
// that row alone, so batched and unbatched runs can be compared byte for byte.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gaussianNoise } from '@diffid/shared/diffusion';
import { GraphBuilder, openGraph } from '@diffid/gpu-worker/internals';
import { median } from './stats.ts';

export interface ProxyDims {
  channels: number;
  height: number;
  width: number;
  tokens: number;
  contextWidth: number;
}

// The weights read once per call (48M float32, 192 MB) and the per-row product's matrix.
const SHARED = 48 * 1024 * 1024;
const K = 256;
const M = 4096;

/** The proxy's graph for a bundle's latent and conditioning shapes (timestep float32 [B]). */
export function proxyUnet(d: ProxyDims): Uint8Array {
  const g = new GraphBuilder('proxy_unet');
  const sample = g.input('sample', 'float32', ['batch', d.channels, d.height, d.width]);
  g.input('timestep', 'float32', ['batch']);
  g.input('encoder_hidden_states', 'float32', ['batch', d.tokens, d.contextWidth]);
  // Per call: the whole weight tensor scaled by a value from the batch, then summed.
  const level = g.op('ReduceMean', [sample], { keepdims: { int: 0 } });
  const read = g.op('ReduceSum', [g.op('Mul', [g.weight('shared', [SHARED], new Float32Array(SHARED).fill(0.5)), level])], { keepdims: { int: 0 } });
  // Per row: a small matrix product on the row's first K values.
  const head = g.op('Slice', [g.op('Reshape', [sample, g.int64('flat', [0, -1])]), g.int64('starts', [0]), g.int64('ends', [K]), g.int64('axes', [1])]);
  const product = g.op('ReduceMean', [g.op('MatMul', [head, g.weight('w', [K, M], gaussianNoise(77, K * M))])], { axes: { ints: [1] }, keepdims: { int: 1 } });
  const perRow = g.op('Reshape', [g.op('Add', [product, read]), g.int64('per_row', [-1, 1, 1, 1])]);
  g.op('Add', [g.op('Mul', [sample, g.scalar('k', 0.999)]), g.op('Mul', [perRow, g.scalar('zero', 0)])], {}, 'out_sample');
  g.output('out_sample', 'float32', ['batch', d.channels, d.height, d.width]);
  return g.toBytes(`proxy U-Net: reads ${SHARED} float32 weights per call and a ${K}×${M} product per row`);
}

/** Milliseconds per call of the proxy at each row count (median of 7 after a warm-up). */
export async function measureProxy(d: ProxyDims, rows: number[], intraOpThreads: number): Promise<Record<number, number>> {
  const dir = await mkdtemp(join(tmpdir(), 'diffid-proxy-'));
  try {
    await writeFile(join(dir, 'unet.onnx'), proxyUnet(d));
    const graph = await openGraph(join(dir, 'unet.onnx'), { executionProvider: 'cpu', intraOpThreads });
    const out: Record<number, number> = {};
    for (const b of rows) {
      const feeds = {
        sample: { dtype: 'float32' as const, data: gaussianNoise(1, b * d.channels * d.height * d.width), dims: [b, d.channels, d.height, d.width] },
        timestep: { dtype: 'float32' as const, data: new Float32Array(b).fill(500), dims: [b] },
        encoder_hidden_states: { dtype: 'float32' as const, data: new Float32Array(b * d.tokens * d.contextWidth), dims: [b, d.tokens, d.contextWidth] },
      };
      await graph.run(feeds);
      const times: number[] = [];
      for (let i = 0; i < 7; i++) {
        const t0 = performance.now();
        await graph.run(feeds);
        times.push(performance.now() - t0);
      }
      out[b] = median(times);
    }
    await graph.release();
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
