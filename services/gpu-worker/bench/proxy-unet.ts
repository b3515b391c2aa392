// A U-Net that costs what a GPU's does at small batches: its time goes to reading a large weight
// matrix (K × M float32), which one call reads once however many rows it carries, so a call of
// several rows costs little more than a call of one. On this CPU the matrix product's arithmetic
// still grows with the rows; measureProxy says by how much, so the figures can be read.
// The output is the sample scaled by 0.999 plus the product's row mean × 1e-30: it depends on the
// weights and on each row (onnxruntime cannot skip the product), and it keeps latents finite.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gaussianNoise } from '@diffid/shared';
import { GraphBuilder } from '../src/bundles/onnx-graph.ts';
import { openGraph } from '../src/onnx.ts';

export interface ProxyDims {
  channels: number;
  height: number;
  width: number;
  tokens: number;
  contextWidth: number;
}

const K = 256;
const M = 32_768;

/** The proxy's graph for a bundle's latent and conditioning shapes (timestep float32 [B]). */
export function proxyUnet(d: ProxyDims): Uint8Array {
  const g = new GraphBuilder('proxy_unet');
  const sample = g.input('sample', 'float32', ['batch', d.channels, d.height, d.width]);
  g.input('timestep', 'float32', ['batch']);
  g.input('encoder_hidden_states', 'float32', ['batch', d.tokens, d.contextWidth]);
  const flat = g.op('Reshape', [sample, g.int64('flat', [0, -1])]);
  const head = g.op('Slice', [flat, g.int64('starts', [0]), g.int64('ends', [K]), g.int64('axes', [1])]);
  const product = g.op('MatMul', [head, g.weight('w', [K, M], gaussianNoise(77, K * M))]);
  const mean = g.op('ReduceMean', [product], { axes: { ints: [1] }, keepdims: { int: 1 } });
  const perRow = g.op('Reshape', [mean, g.int64('per_row', [-1, 1, 1, 1])]);
  const tiny = g.op('Mul', [perRow, g.scalar('tiny', 1e-30)]);
  g.op('Add', [g.op('Mul', [sample, g.scalar('k', 0.999)]), tiny], {}, 'out_sample');
  g.output('out_sample', 'float32', ['batch', d.channels, d.height, d.width]);
  return g.toBytes(`proxy U-Net: reads a ${K}×${M} float32 matrix per call`);
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
      out[b] = times.sort((x, y) => x - y)[3] as number;
    }
    await graph.release();
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
