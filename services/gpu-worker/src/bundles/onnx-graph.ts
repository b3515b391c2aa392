// Builds ONNX graphs from TypeScript (onnx-proto's generated protobuf classes). Serialisation is
// deterministic: the same calls give the same bytes.

import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
type AttributeProto = onnxProto.onnx.IAttributeProto;

/** Opset of every generated graph; IR version 8 is what onnx-proto's schema carries. */
export const OPSET = 17;

export type ElemType = 'float32' | 'int32' | 'int64';
const ELEM: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  int32: onnx.TensorProto.DataType.INT32,
  int64: onnx.TensorProto.DataType.INT64,
};

/** An attribute value with its ONNX type made explicit (1.0 as a float is not 1 as an int). */
export type Attr =
  | { int: number }
  | { float: number }
  | { ints: number[] }
  | { floats: number[] }
  | { string: string };

function attribute(name: string, a: Attr): AttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if ('int' in a) return { name, type: T.INT, i: a.int };
  if ('float' in a) return { name, type: T.FLOAT, f: a.float };
  if ('ints' in a) return { name, type: T.INTS, ints: a.ints };
  if ('floats' in a) return { name, type: T.FLOATS, floats: a.floats };
  return { name, type: T.STRING, s: new TextEncoder().encode(a.string) };
}

function valueInfo(name: string, elem: ElemType, shape: Array<number | string>): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM[elem],
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/** Accumulates one graph's inputs, weights and nodes. */
export class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private counter = 0;

  constructor(private readonly name: string) {}

  input(name: string, elem: ElemType, shape: Array<number | string>): string {
    this.inputs.push(valueInfo(name, elem, shape));
    return name;
  }

  output(name: string, elem: ElemType, shape: Array<number | string>): void {
    this.outputs.push(valueInfo(name, elem, shape));
  }

  /** A float32 initializer; returns its name. */
  weight(name: string, dims: number[], data: Float32Array): string {
    const size = dims.reduce((a, b) => a * b, 1);
    if (size !== data.length) throw new RangeError(`weight ${name}: ${data.length} values for dims [${dims.join(',')}]`);
    const raw = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    this.initializers.push({ name, dims, dataType: ELEM.float32, rawData: raw });
    return name;
  }

  /** An int64 constant initializer (shapes, axes); returns its name. */
  int64(name: string, values: number[]): string {
    const raw = new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer);
    this.initializers.push({ name, dims: [values.length], dataType: ELEM.int64, rawData: raw });
    return name;
  }

  /** A float32 scalar constant; returns its name. */
  scalar(name: string, value: number): string {
    this.initializers.push({ name, dims: [], dataType: ELEM.float32, rawData: new Uint8Array(new Float32Array([value]).buffer) });
    return name;
  }

  /** Adds a node with one output (named `out` or generated) and returns that output's name. */
  op(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, out?: string): string {
    const output = out ?? `${opType.toLowerCase()}_${this.counter++}`;
    this.nodes.push({
      opType,
      input: inputs,
      output: [output],
      name: `${opType}_${this.nodes.length}`,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return output;
  }

  /** Serialises the model. */
  toBytes(docString = ''): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'diffid-serve',
      producerVersion: '1',
      docString,
      opsetImport: [{ domain: '', version: OPSET }],
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}
