// Reads a graph's inputs and outputs from its ONNX bytes, without onnxruntime (the generator
// links real model files and must know their names and widths).
import onnxProto from 'onnx-proto';

export interface GraphIo {
  inputs: Array<{ name: string; shape: Array<number | string> }>;
  outputs: Array<{ name: string; shape: Array<number | string> }>;
}

export function inspectGraph(bytes: Uint8Array): GraphIo {
  const graph = onnxProto.onnx.ModelProto.decode(bytes).graph;
  if (!graph) throw new Error('not an ONNX model (no graph)');
  const initializers = new Set((graph.initializer ?? []).map((i) => i.name));
  const io = (list: onnxProto.onnx.IValueInfoProto[]) =>
    list.map((v) => ({
      name: v.name ?? '',
      shape: (v.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimParam ? d.dimParam : Number(d.dimValue ?? 0) || 'dynamic')),
    }));
  // Older exports list weights among the inputs too; those are not fed.
  return { inputs: io((graph.input ?? []).filter((v) => !initializers.has(v.name ?? ''))), outputs: io(graph.output ?? []) };
}

/** The files a graph's initializers keep their weights in (ONNX external data), relative to it. */
export function externalDataLocations(bytes: Uint8Array): string[] {
  const graph = onnxProto.onnx.ModelProto.decode(bytes).graph;
  const locations = new Set<string>();
  for (const init of graph?.initializer ?? []) {
    if (init.dataLocation !== onnxProto.onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const location = (init.externalData ?? []).find((e) => e.key === 'location')?.value;
    if (location) locations.add(location);
  }
  return [...locations];
}
