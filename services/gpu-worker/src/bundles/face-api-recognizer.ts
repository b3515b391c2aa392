// The second recognizer the project ships for evaluation: the 128-d face recognition network that
// @vladmandic/face-api publishes as TensorFlow.js weights (a ResNet of 29 convolutions; the
// package's src/faceRecognitionNet describes it), rebuilt here as an ONNX graph from those weights
// so that onnxruntime runs it like any linked recognizer. docs/face-models.md says where it comes
// from and how its crop is set.
//
// The network, NHWC in TensorFlow.js and NCHW here: a 7×7 stride-2 convolution, a 3×3 stride-2 max
// pool, residual blocks of two 3×3 convolutions at 32, 64, 128 and 256 channels (each block that
// halves the size takes its shortcut through a 2×2 average pool, zero-padded to the new channel
// count and, where the convolution came out smaller, its output zero-padded to the pool's size),
// a mean over the image and a 256×128 matrix. Each convolution has a bias and then a per-channel
// scale and shift. Input pixels are (p − mean RGB) / 255.
import { GraphBuilder } from './onnx-graph.ts';

/** One tensor of a TensorFlow.js weights manifest. */
interface ManifestWeight {
  name: string;
  shape: number[];
  dtype: 'float32';
  quantization?: { dtype: 'uint8'; scale: number; min: number };
}

/** The rebuild's version: raise it when faceApiRecognizerGraph changes, and installs rebuild. */
export const FACE_API_REBUILD = 'face-api-onnx-1';

/** The crop the network was trained on: 150² RGB, the mean colour taken away, divided by 255. */
export const FACE_API_INPUT = 150;
export const FACE_API_MEAN_RGB = [122.782, 117.001, 104.298] as const;

/**
 * Where the 5 landmarks (eyes, nose tip, mouth corners, as seen in the image) fall in its 150²
 * crop: dlib's mean face with padding 0.25 (docs/face-models.md derives them).
 */
export const FACE_API_TEMPLATE: Array<[number, number]> = [
  [47.55, 46.6],
  [100.48, 46.6],
  [74.01, 76.56],
  [50.41, 103.02],
  [97.61, 103.02],
];

/** The tensors of a weights manifest read from its .bin: uint8-quantized ones as min + q·scale. */
export function readWeights(manifestJson: string, bin: Uint8Array): Map<string, { shape: number[]; data: Float32Array }> {
  const groups = JSON.parse(manifestJson) as Array<{ weights: ManifestWeight[] }>;
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  let at = 0;
  for (const w of groups.flatMap((g) => g.weights)) {
    const n = w.shape.reduce((a, b) => a * b, 1);
    const bytes = w.quantization ? n : 4 * n;
    if (at + bytes > bin.length) throw new Error(`the weights file ends before ${w.name} (${bin.length} bytes)`);
    let data: Float32Array;
    if (w.quantization) {
      if (w.quantization.dtype !== 'uint8') throw new Error(`${w.name}: ${w.quantization.dtype} quantization is not supported`);
      const { min, scale } = w.quantization;
      data = Float32Array.from(bin.subarray(at, at + n), (q) => min + q * scale);
      at += n;
    } else {
      if (w.dtype !== 'float32') throw new Error(`${w.name}: dtype ${String(w.dtype)} is not supported`);
      data = new Float32Array(bin.slice(at, at + 4 * n).buffer);
      at += 4 * n;
    }
    out.set(w.name, { shape: w.shape, data });
  }
  if (at !== bin.length) throw new Error(`the weights file has ${bin.length - at} bytes the manifest does not name`);
  return out;
}

/** A [kh, kw, in, out] filter as ONNX's [out, in, kh, kw]. */
function toOihw(shape: number[], data: Float32Array): { dims: number[]; data: Float32Array } {
  const [kh, kw, ci, co] = shape as [number, number, number, number];
  const out = new Float32Array(data.length);
  for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) for (let i = 0; i < ci; i++) for (let o = 0; o < co; o++) out[((o * ci + i) * kh + y) * kw + x] = data[((y * kw + x) * ci + i) * co + o] as number;
  return { dims: [co, ci, kh, kw], data: out };
}

/** The ONNX graph (`pixels` [1, 3, 150, 150] → `embedding` [1, 128]) of face-api's recognition weights. */
export function faceApiRecognizerGraph(manifestJson: string, bin: Uint8Array): Uint8Array {
  const w = readWeights(manifestJson, bin);
  const take = (name: string) => {
    const t = w.get(name);
    if (!t) throw new Error(`the weights have no ${name}`);
    return t;
  };
  const g = new GraphBuilder('face-api-recognition');
  let size = FACE_API_INPUT;
  let channels = 3;
  let x = g.input('pixels', 'float32', [1, 3, FACE_API_INPUT, FACE_API_INPUT]);
  const zeros = (name: string, dims: number[]) => g.weight(name, dims, new Float32Array(dims.reduce((a, b) => a * b, 1)));

  /** Convolution, bias, per-channel scale and shift, then ReLU when asked: the size it leaves. */
  const conv = (input: string, prefix: string, o: { stride: 1 | 2; relu: boolean; same: boolean; inSize: number }): { out: string; size: number; channels: number } => {
    const f = take(`${prefix}/conv/filters`);
    const k = f.shape[0] as number;
    const filters = toOihw(f.shape, f.data);
    const co = filters.dims[0] as number;
    const pad = o.same ? (k - 1) / 2 : 0;
    let out = g.op('Conv', [input, g.weight(`${prefix}/W`, filters.dims, filters.data), g.weight(`${prefix}/B`, [co], take(`${prefix}/conv/bias`).data)], {
      kernel_shape: { ints: [k, k] },
      strides: { ints: [o.stride, o.stride] },
      pads: { ints: [pad, pad, pad, pad] },
    });
    out = g.op('Mul', [out, g.weight(`${prefix}/scale`, [1, co, 1, 1], take(`${prefix}/scale/weights`).data)]);
    out = g.op('Add', [out, g.weight(`${prefix}/shift`, [1, co, 1, 1], take(`${prefix}/scale/biases`).data)]);
    if (o.relu) out = g.op('Relu', [out]);
    return { out, size: Math.floor((o.inSize + 2 * pad - k) / o.stride) + 1, channels: co };
  };
  const residual = (input: string, prefix: string) => {
    const a = conv(input, `${prefix}/conv1`, { stride: 1, relu: true, same: true, inSize: size });
    const b = conv(a.out, `${prefix}/conv2`, { stride: 1, relu: false, same: true, inSize: size });
    return g.op('Relu', [g.op('Add', [b.out, input])]);
  };
  const residualDown = (input: string, prefix: string) => {
    const a = conv(input, `${prefix}/conv1`, { stride: 2, relu: true, same: false, inSize: size });
    const b = conv(a.out, `${prefix}/conv2`, { stride: 1, relu: false, same: true, inSize: a.size });
    let out = b.out;
    let pooled = g.op('AveragePool', [input], { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } });
    const pooledSize = Math.floor((size - 2) / 2) + 1;
    if (a.size !== pooledSize) {
      // The convolution came out a row and a column short of the pool: zeros at the bottom and right.
      out = g.op('Concat', [out, zeros(`${prefix}/pad_h`, [1, b.channels, 1, a.size])], { axis: { int: 2 } });
      out = g.op('Concat', [out, zeros(`${prefix}/pad_w`, [1, b.channels, pooledSize, 1])], { axis: { int: 3 } });
    }
    if (b.channels !== channels) pooled = g.op('Concat', [pooled, zeros(`${prefix}/pad_c`, [1, b.channels - channels, pooledSize, pooledSize])], { axis: { int: 1 } });
    size = pooledSize;
    channels = b.channels;
    return g.op('Relu', [g.op('Add', [pooled, out])]);
  };

  const stem = conv(x, 'conv32_down', { stride: 2, relu: true, same: false, inSize: size });
  channels = stem.channels;
  x = g.op('MaxPool', [stem.out], { kernel_shape: { ints: [3, 3] }, strides: { ints: [2, 2] } });
  size = Math.floor((stem.size - 3) / 2) + 1;
  for (const block of ['conv32_1', 'conv32_2', 'conv32_3']) x = residual(x, block);
  x = residualDown(x, 'conv64_down');
  for (const block of ['conv64_1', 'conv64_2', 'conv64_3']) x = residual(x, block);
  x = residualDown(x, 'conv128_down');
  for (const block of ['conv128_1', 'conv128_2']) x = residual(x, block);
  x = residualDown(x, 'conv256_down');
  for (const block of ['conv256_1', 'conv256_2']) x = residual(x, block);
  x = residualDown(x, 'conv256_down_out');
  const pooled = g.op('ReduceMean', [x], { axes: { ints: [2, 3] }, keepdims: { int: 0 } });
  const fc = take('fc');
  g.op('MatMul', [pooled, g.weight('fc', fc.shape, fc.data)], {}, 'embedding');
  g.output('embedding', 'float32', [1, fc.shape[1] as number]);
  return g.toBytes("@vladmandic/face-api's 128-d face recognition network, rebuilt from its TensorFlow.js weights");
}

/** The sidecar that links the graph (link-models.ts): its crop, normalisation and template. */
export const FACE_API_SIDECAR = {
  preprocess: {
    channel_order: 'RGB',
    divide_by: 255,
    mean: FACE_API_MEAN_RGB.map((m) => m / 255),
    std: [1, 1, 1],
    size: FACE_API_INPUT,
    template: FACE_API_TEMPLATE,
  },
};
