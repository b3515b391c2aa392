// Gives a graph float16 inputs and outputs, as fp16 exports have, by a Cast at each float port:
// the graph's own math is unchanged, so the same bundle in both forms shows what the float16
// boundary alone costs (tests; `npm run bundle -- --fp16-io`).
import onnxProto from 'onnx-proto';

const FLOAT = 1;
const FLOAT16 = 10;

export function withHalfBoundary(bytes: Uint8Array): Uint8Array {
  const model = onnxProto.onnx.ModelProto.decode(bytes);
  const graph = model.graph;
  if (!graph) throw new Error('not an ONNX model (no graph)');
  const nodes = graph.node ?? [];
  const rename = (from: string, to: string, side: 'input' | 'output') => {
    for (const node of nodes) node[side] = (node[side] ?? []).map((n) => (n === from ? to : n));
  };
  const cast = (input: string, output: string, to: number) =>
    onnxProto.onnx.NodeProto.create({ opType: 'Cast', input: [input], output: [output], name: `fp16_boundary_${output}`, attribute: [{ name: 'to', type: onnxProto.onnx.AttributeProto.AttributeType.INT, i: to }] });
  const head: onnxProto.onnx.INodeProto[] = [];
  const tail: onnxProto.onnx.INodeProto[] = [];
  for (const input of graph.input ?? []) {
    const tensor = input.type?.tensorType;
    if (!tensor || tensor.elemType !== FLOAT || !input.name) continue;
    rename(input.name, `${input.name}__fp32`, 'input');
    head.push(cast(input.name, `${input.name}__fp32`, FLOAT));
    tensor.elemType = FLOAT16;
  }
  for (const output of graph.output ?? []) {
    const tensor = output.type?.tensorType;
    if (!tensor || tensor.elemType !== FLOAT || !output.name) continue;
    rename(output.name, `${output.name}__fp32`, 'output');
    rename(output.name, `${output.name}__fp32`, 'input');
    tail.push(cast(`${output.name}__fp32`, output.name, FLOAT16));
    tensor.elemType = FLOAT16;
  }
  graph.node = [...head, ...nodes, ...tail];
  return onnxProto.onnx.ModelProto.encode(model).finish();
}
