// The U-Net at timestep t, with the timestep fed as the graph declares it: float32 [B]
// (diffusers), a float32 scalar, or int64 [B]. `unetRunner` is the sampling loop's form: its
// conditioning batch and timestep buffer are made once, the sample batch is the caller's own
// buffer, and the output is used as onnxruntime returns it — no per-step concatenation or slicing.
import type { ResolvedPort } from '../bundle-signature.ts';
import { runRows, type FixedFeed } from '../graph-io.ts';
import type { Tensor } from '../onnx.ts';
import type { StageContext } from './context.ts';

/** One batched U-Net evaluation at t over rows (inversion uses it); returns one array per row. */
export async function predictNoise(ctx: StageContext, latents: Float32Array[], conditioning: Float32Array[], t: number): Promise<Float32Array[]> {
  const { bundle } = ctx;
  const d = bundle.dims;
  const ports = bundle.ports.unet;
  const tPort = ports.inputs.timestep;
  const fixed: FixedFeed[] = [];
  const rows = [
    { port: ports.inputs.sample, rows: latents, rowDims: [d.latentChannels, d.latentHeight, d.latentWidth] },
    { port: ports.inputs.encoder_hidden_states, rows: conditioning, rowDims: [d.conditioningTokens, d.conditioningWidth] },
  ];
  if (tPort.shape.length === 0) fixed.push({ port: tPort, tensor: scalarTimestep(tPort, t) });
  else rows.push({ port: tPort, rows: latents.map(() => new Float32Array([t])), rowDims: [] });
  const [noise] = await runRows(bundle.graphs.unet, rows, [ports.outputs.noise], fixed);
  return noise as Float32Array[];
}

function scalarTimestep(port: ResolvedPort, t: number): Tensor {
  return port.dtype === 'int64' ? { dtype: 'int64', data: new BigInt64Array([BigInt(t)]), dims: [] } : { dtype: 'float32', data: new Float32Array([t]), dims: [] };
}

export interface UnetRunner {
  /** The noise prediction for every row of `sample` ([rows, C, h, w], read only) at t: [rows, C, h, w]. */
  run(sample: Float32Array, t: number): Promise<Float32Array>;
}

/**
 * A U-Net bound to one batch: `context` holds the conditioning of every row, [rows, N, W]. A graph
 * that fixes its batch at 1 is run row by row.
 */
export function unetRunner(ctx: StageContext, rows: number, context: Float32Array): UnetRunner {
  const { bundle } = ctx;
  const d = bundle.dims;
  const ports = bundle.ports.unet;
  const graph = bundle.graphs.unet;
  const sampleDims = [d.latentChannels, d.latentHeight, d.latentWidth];
  const contextDims = [d.conditioningTokens, d.conditioningWidth];
  const sampleSize = d.latentChannels * d.latentHeight * d.latentWidth;
  const contextSize = d.conditioningTokens * d.conditioningWidth;
  const tPort = ports.inputs.timestep;
  const oneAtATime = [ports.inputs.sample, ports.inputs.encoder_hidden_states, tPort].some((p) => p.shape.length > 0 && typeof p.shape[0] === 'number');
  const perCall = oneAtATime ? 1 : rows;
  // The timestep's buffer, refilled each step.
  const tFloat = new Float32Array(perCall);
  const tInt = new BigInt64Array(perCall);
  const timestep = (t: number): Tensor => {
    if (tPort.shape.length === 0) return scalarTimestep(tPort, t);
    if (tPort.dtype === 'int64') return { dtype: 'int64', data: tInt.fill(BigInt(t)), dims: [perCall] };
    return { dtype: 'float32', data: tFloat.fill(t), dims: [perCall] };
  };
  const contexts = oneAtATime ? Array.from({ length: rows }, (_, r) => context.slice(r * contextSize, (r + 1) * contextSize)) : [context];
  return {
    async run(sample, t) {
      const tensor = timestep(t);
      if (!oneAtATime) {
        const out = await graph.run({
          [ports.inputs.sample.name]: { dtype: 'float32', data: sample, dims: [rows, ...sampleDims] },
          [ports.inputs.encoder_hidden_states.name]: { dtype: 'float32', data: context, dims: [rows, ...contextDims] },
          [tPort.name]: tensor,
        });
        return noiseOf(out, ports.outputs.noise.name, graph.path);
      }
      const noise = new Float32Array(rows * sampleSize);
      for (let r = 0; r < rows; r++) {
        const out = await graph.run({
          [ports.inputs.sample.name]: { dtype: 'float32', data: sample.slice(r * sampleSize, (r + 1) * sampleSize), dims: [1, ...sampleDims] },
          [ports.inputs.encoder_hidden_states.name]: { dtype: 'float32', data: contexts[r] as Float32Array, dims: [1, ...contextDims] },
          [tPort.name]: tensor,
        });
        noise.set(noiseOf(out, ports.outputs.noise.name, graph.path), r * sampleSize);
      }
      return noise;
    },
  };
}

function noiseOf(out: Record<string, Tensor>, name: string, path: string): Float32Array {
  const t = out[name];
  if (!t || !(t.data instanceof Float32Array)) throw new Error(`${path}: output "${name}" missing or not float32`);
  return t.data;
}
