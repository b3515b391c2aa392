// What other workspaces (the API's tests, the launcher) use of the worker.
export { startWorkerService, type WorkerService, type WorkerServiceOptions } from './worker/service.ts';
export { loadBundle, type LoadedBundle } from './runtime/bundle-loader.ts';
export { buildTinyBundle, type TinyOptions } from './bundles/tiny-bundle.ts';
export { writeBundle, type GeneratedBundle } from './bundles/write-bundle.ts';
export { buildDefaultBundle, ensureDefaultBundle } from './bundles/default-bundle.ts';
export { buildDemoBundle, type DemoOptions } from './bundles/demo-bundle.ts';
export { LinkError, linkDetector, linkEmbedder } from './bundles/link-models.ts';
export { SHIPPED, readShippedModel } from './bundles/shipped-models.ts';
export { createWorkerMetrics, serveMetrics, type WorkerMetrics } from './worker/metrics.ts';
export { writeExportLayout, type ExportLayoutOptions } from './bundles/export-layout.ts';
export { importExport, type ImportOptions } from './bundles/import-export.ts';
export { DIFFUSERS_FLAVOR, OPTIMUM_FLAVOR } from './bundles/tiny-graphs.ts';
