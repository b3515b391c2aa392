// The U-Net at timestep t, with the timestep fed as the graph declares it: float32 [B]
// (diffusers), a float32 scalar, or int64 [B]. `unetRunner` is the sampling loop's form: its
// conditioning batch and timestep buffer are made once, and the sample batch and the output are
// the caller's own buffers, which onnxruntime reads and writes in place — no per-step
// concatenation, slicing or allocation.
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
  /** The noise prediction for every row of `sample` ([rows, C, h, w], read only) at t, written into `noise` ([rows, C, h, w]). */
  run(sample: Float32Array, t: number, noise: Float32Array): Promise<void>;
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
  const calls = oneAtATime ? rows : 1;
  const rowsPerCall = oneAtATime ? 1 : rows;
  const row = (a: Float32Array, size: number, r: number): Float32Array => (oneAtATime ? a.subarray(r * size, (r + 1) * size) : a);
  return {
    async run(sample, t, noise) {
      const tensor = timestep(t);
      for (let r = 0; r < calls; r++) {
        await graph.run(
          {
            [ports.inputs.sample.name]: { dtype: 'float32', data: row(sample, sampleSize, r), dims: [rowsPerCall, ...sampleDims] },
            [ports.inputs.encoder_hidden_states.name]: { dtype: 'float32', data: row(context, contextSize, r), dims: [rowsPerCall, ...contextDims] },
            [tPort.name]: tensor,
          },
          { [ports.outputs.noise.name]: { dtype: 'float32', data: row(noise, sampleSize, r), dims: [rowsPerCall, ...sampleDims] } },
        );
      }
    },
  };
}
