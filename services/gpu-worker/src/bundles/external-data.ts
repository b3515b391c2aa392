// Moves a graph's large weights into a side file, as exporters do for graphs over 2 GB (ONNX
// external data: each initializer names the file, an offset and a length). The bundle tools use
// it to write tiny bundles in that layout, so the loader's handling of it is tested.
import onnxProto from 'onnx-proto';

/** The graph without its weights of at least `minBytes`, and the side file holding them. */
export function toExternalData(bytes: Uint8Array, location: string, minBytes = 1024): { graph: Uint8Array; data: Uint8Array } {
  const model = onnxProto.onnx.ModelProto.decode(bytes);
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const init of model.graph?.initializer ?? []) {
    const raw = init.rawData;
    if (!raw || raw.length < minBytes) continue;
    // Offsets aligned to 4 KB, as onnx's own converter writes them (mmap-friendly).
    const pad = (4096 - (offset % 4096)) % 4096;
    if (pad) chunks.push(new Uint8Array(pad));
    offset += pad;
    chunks.push(raw);
    init.externalData = [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(raw.length) },
    ];
    init.dataLocation = onnxProto.onnx.TensorProto.DataLocation.EXTERNAL;
    init.rawData = new Uint8Array(0);
    offset += raw.length;
  }
  const data = new Uint8Array(offset);
  let at = 0;
  for (const c of chunks) {
    data.set(c, at);
    at += c.length;
  }
  return { graph: onnxProto.onnx.ModelProto.encode(model).finish(), data };
}
