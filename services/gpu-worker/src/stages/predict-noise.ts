// The U-Net at timestep t, with the timestep fed as the graph declares it: float32 [B]
// (diffusers), a float32 scalar, or int64 [B]. The sampling loop runs the U-Net through its batch
// instead (unet-batch.ts).
import type { ResolvedPort } from '../runtime/bundle-signature.ts';
import { runRows, scalarTimestep, type FixedFeed } from '../runtime/graph-io.ts';
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
