// The worker's memory formula (runtime/memory-plan.ts) against what was measured of the full-size
// graphs on the CPU (docs/full-size.md): onnxruntime's growth per U-Net row and per VAE image,
// memory pattern off, 1 thread.
import t from 'tap';
import { memoryPlan, plannedMb } from '../src/runtime/memory-plan.ts';

const FULL_FP32 = 5_765_405_545; // bytes of the full-size fp32 bundle's graph and weight files
const plan = (imageSide: number, extra: Partial<Parameters<typeof memoryPlan>[0]> = {}) =>
  memoryPlan({ weightBytes: FULL_FP32, float16: false, executionProvider: 'cpu', imageSide, budgetMb: null, ...extra });

const within = (value: number, measured: number, share: number) => Math.abs(value - measured) <= share * measured;

t.test('a U-Net row: within 5 % of the measured growth at 256 and 512 px', async (t) => {
  // Measured: 82 MB per row at 256 px (B = 1, 2, 4, 8 alike), 1117 MB at 512 px (B = 1, 2, 4).
  t.ok(within(plan(256).row_mb, 82, 0.05), `256 px: ${plan(256).row_mb.toFixed(1)} MB (measured 82)`);
  t.ok(within(plan(512).row_mb, 1117, 0.05), `512 px: ${plan(512).row_mb.toFixed(1)} MB (measured 1117)`);
  t.ok(plan(768).row_mb > 4.5 * plan(512).row_mb, 'attention dominates: 1.5× the side is over 4.5× the row (its (L²)² term is 5.06×)');
});

t.test('fixed: the VAE decoding one image and encoding two, plus the runtime', async (t) => {
  // Measured at 512 px: decoder 1027 MB per image, encoder 387 MB per image.
  t.ok(within(plan(512).fixed_mb - 1024, 1027 + 2 * 387, 0.05), `512 px: ${(plan(512).fixed_mb - 1024).toFixed(0)} MB beside the runtime's 1024 (measured 1801)`);
  t.equal(plan(512).weights_mb, FULL_FP32 / 2 ** 20, 'weights: the files, as they are, on the CPU in float32');
});

t.test('float16: half the activations and weights on CUDA; float32 copies on the CPU', async (t) => {
  const half = { weightBytes: FULL_FP32 / 2, float16: true };
  const cuda = plan(512, { ...half, executionProvider: 'cuda' });
  const cpu = plan(512, { ...half });
  t.ok(Math.abs(cuda.row_mb - plan(512).row_mb / 2) < 1e-9, 'a row in float16 is half of one in float32');
  t.equal(cuda.weights_mb, FULL_FP32 / 2 / 2 ** 20);
  t.equal(cpu.weights_mb, FULL_FP32 / 2 ** 20, 'on the CPU a float16 bundle holds float32 weights too');
  t.equal(cpu.row_mb, plan(512).row_mb);
});

t.test('rows a budget holds', async (t) => {
  t.equal(plan(512).max_rows, null, 'no budget: unbounded');
  const p = plan(512, { budgetMb: 24 * 1024 });
  t.ok(p.max_rows !== null && plannedMb(p, p.max_rows) <= 24 * 1024 && plannedMb(p, p.max_rows + 1) > 24 * 1024, `24 GB: ${p.max_rows} rows, the most that fit`);
  t.equal(plan(512, { budgetMb: 4096 }).max_rows, 0, 'a budget under the weights holds none');
  // What docs/full-size.md states for GPUs: float16 on CUDA at 512 px.
  const gpu = (gb: number) => Math.floor((plan(512, { weightBytes: 2_882_702_772, float16: true, executionProvider: 'cuda', budgetMb: gb * 1024 }).max_rows ?? 0) / 2);
  t.same([gpu(24), gpu(80)], [18, 70], 'guided one-image jobs in one batch: 18 on 24 GB, 70 on 80 GB');
});
