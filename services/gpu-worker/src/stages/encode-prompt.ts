// Prompts → CLIP text hidden states (e_t in the paper's eq. 7), in the ids dtype the graph takes.
import { runRows } from '../runtime/graph-io.ts';
import type { StageContext } from './context.ts';

export interface EncodedPrompts {
  hidden: Float32Array[];
  truncated: boolean[];
}

export async function encodePrompts(ctx: StageContext, prompts: string[]): Promise<EncodedPrompts> {
  const { bundle } = ctx;
  const tokens = prompts.map((p) => bundle.tokenizer.encode(p));
  const ports = bundle.ports.text_encoder;
  const [hidden] = await runRows(
    bundle.graphs.text_encoder,
    [{ port: ports.inputs.input_ids, rows: tokens.map((t) => t.ids), rowDims: [bundle.tokenizer.maxLength] }],
    [ports.outputs.hidden_states],
  );
  return { hidden: hidden as Float32Array[], truncated: tokens.map((t) => t.truncated) };
}
