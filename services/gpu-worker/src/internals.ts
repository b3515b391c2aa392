// What the benchmarks and the test helpers reach for inside the worker, so that `npm run bench`
// runs them from the built package (dist/) like everything else, not from a second compiled copy.
// Not an API for other services: those use the package's root (index.ts).
export { GraphBuilder } from './bundles/onnx-graph.ts';
export { sha256Hex } from './bundles/write-bundle.ts';
export { NO_TORCH_PYTHON, torchPython } from './bundles/torch-python.ts';
export { torchReference } from './bundles/full-reference.ts';
export { defaultIntraOpThreads, openGraph, type Graph, type Tensor } from './runtime/onnx.ts';
export type { LoadedBundle } from './runtime/bundle-loader.ts';
export type { ResolvedPort } from './runtime/bundle-signature.ts';
export { unetBatch } from './runtime/unet-batch.ts';
export { stageContext } from './stages/context.ts';
export { denoise } from './stages/denoise.ts';
