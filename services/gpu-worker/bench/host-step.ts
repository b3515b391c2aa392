// Host work per denoising step at Stable Diffusion 1.5's shapes: the real `denoise` stage (guidance
// batch, U-Net call, guidance and the DDIM update) around a stand-in U-Net whose own work is
// trivial (sample [B,4,64,64], timestep [B], encoder_hidden_states [B,81,768] → sample × 0.999),
// so that the time outside `session.run` is what this code spends per step. B counts U-Net rows:
// both guidance branches, B/2 images. Beside it, when a Python with torch is here, the same host work
// done the way diffusers does it (torch_host_step.py). Part of `npm run bench`.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SD15_SCHEDULER, gaussianNoise, makeSchedule } from '@diffid/shared/diffusion';
import { GraphBuilder, denoise, openGraph, stageContext, torchPython, unetBatch, type Graph, type LoadedBundle } from '@diffid/gpu-worker/internals';
import { median } from './stats.ts';

const C = 4;
const H = 64;
const TOKENS = 81;
const WIDTH = 768;
const STEPS = 20;
const ROUNDS = 9;

function standInUnet(): Uint8Array {
  const g = new GraphBuilder('unet_stand_in');
  const sample = g.input('sample', 'float32', ['batch', C, H, H]);
  g.input('timestep', 'float32', ['batch']);
  g.input('encoder_hidden_states', 'float32', ['batch', TOKENS, WIDTH]);
  g.op('Mul', [sample, g.scalar('k', 0.999)], {}, 'out_sample');
  g.output('out_sample', 'float32', ['batch', C, H, H]);
  return g.toBytes('stand-in U-Net at SD 1.5 shapes, trivial compute');
}

/** Wraps a graph so that the time inside `run` is counted. */
function timed(graph: Graph): { graph: Graph; ms: () => number } {
  let total = 0;
  return {
    graph: { ...graph, run: async (feeds) => { const t0 = performance.now(); const out = await graph.run(feeds); total += performance.now() - t0; return out; } },
    ms: () => total,
  };
}

export type HostStepFigures = Record<'B=2' | 'B=8' | 'B=16', { host_ms_per_step: number; run_ms_per_step: number }>;

/** Host ms per step (median of 9 rounds of 20 steps) and ms inside session.run, at B = 2, 8, 16. */
export async function measureHostStep(intraOpThreads: number): Promise<HostStepFigures> {
  const dir = await mkdtemp(join(tmpdir(), 'diffid-bench-'));
  await writeFile(join(dir, 'unet.onnx'), standInUnet());
  const unet = await openGraph(join(dir, 'unet.onnx'), { executionProvider: 'cpu', intraOpThreads: intraOpThreads });
  const port = (name: string, shape: Array<number | string>) => ({ name, dtype: 'float32' as const, shape });
  const results = {} as HostStepFigures;
  for (const B of [2, 8, 16]) {
    const n = B / 2;
    const t = timed(unet);
    const bundle = {
      graphs: { unet: t.graph },
      ports: { unet: { inputs: { sample: port('sample', ['batch', C, H, H]), timestep: port('timestep', ['batch']), encoder_hidden_states: port('encoder_hidden_states', ['batch', TOKENS, WIDTH]) }, outputs: { noise: port('out_sample', ['batch', C, H, H]) } } },
      dims: { latentChannels: C, latentHeight: H, latentWidth: H, conditioningTokens: TOKENS, conditioningWidth: WIDTH },
      manifest: { scheduler: SD15_SCHEDULER },
    } as unknown as LoadedBundle;
    // As on the inference thread: one batch whose memory serves every run.
    const ctx = stageContext(bundle, { schedule: makeSchedule(SD15_SCHEDULER), batch: unetBatch(bundle, B) });
    const request = {
      latents: Array.from({ length: n }, (_, i) => gaussianNoise(i, C * H * H)),
      conditioning: Array.from({ length: n }, (_, i) => gaussianNoise(100 + i, TOKENS * WIDTH)),
      unconditional: Array.from({ length: n }, (_, i) => gaussianNoise(200 + i, TOKENS * WIDTH)),
      guidanceScale: 5,
      steps: STEPS,
    };
    await denoise(ctx, request); // warm-up
    const walls: number[] = [];
    const runs: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      // Each round starts from a collected heap (npm run bench passes --expose-gc), so a round does
      // not pay for the garbage of the one before or of the setup.
      (globalThis as { gc?: () => void }).gc?.();
      const before = t.ms();
      const t0 = performance.now();
      await denoise(ctx, request);
      walls.push(performance.now() - t0);
      runs.push(t.ms() - before);
    }
    results[`B=${B}` as keyof HostStepFigures] = {
      host_ms_per_step: median(walls.map((w, i) => (w - (runs[i] as number)) / STEPS)),
      run_ms_per_step: median(runs.map((x) => x / STEPS)),
    };
  }
  await unet.release();
  await rm(dir, { recursive: true, force: true });
  return results;
}

/** The torch loop's host ms per step at the same B, or why it did not run. */
export async function measureTorchHostStep(): Promise<Record<string, { host_ms_per_step: number }> | { skipped: string }> {
  const python = torchPython();
  if (!python) return { skipped: 'no Python with torch here' };
  const { stdout } = await promisify(execFile)(python, [fileURLToPath(new URL('../../../services/gpu-worker/bench/torch_host_step.py', import.meta.url))]);
  return JSON.parse(stdout) as Record<string, { host_ms_per_step: number }>;
}
