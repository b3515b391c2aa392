// A model of a full build run in torch (diffid_reference.full_reference): rebuilt from the export's
// diffid/build.json with the same seeded weights, in float32. The parity tests compare the served
// graphs with it, and `npm run bench -- --full` times it beside onnxruntime.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Tensor } from '../runtime/onnx.ts';
import { PYTHON_DIR } from './full-bundle.ts';
import { NO_TORCH_PYTHON, torchPython } from './torch-python.ts';

const run = promisify(execFile);

export interface TorchReferenceOptions {
  /** Forward passes to time (the first gives the output); default 1. */
  repeat?: number;
  /** torch.set_num_threads; default torch's own. */
  threads?: number;
  /** torch's device: cpu (default) or cuda. */
  device?: 'cpu' | 'cuda';
  python?: string;
}

/** `model`'s output in torch on float32 or int32 `feeds` (in the graph's input order), and each forward pass's milliseconds. */
export async function torchReference(buildJson: string, model: string, feeds: Record<string, Tensor>, o: TorchReferenceOptions = {}): Promise<{ output: Float32Array; forward_ms: number[] }> {
  const python = o.python ?? torchPython();
  if (!python) throw new Error(`${NO_TORCH_PYTHON}: the torch reference cannot run`);
  const dir = await mkdtemp(join(tmpdir(), 'diffid-torch-'));
  try {
    const spec: Record<string, unknown> = {};
    for (const [name, tensor] of Object.entries(feeds)) {
      const data = tensor.data as Float32Array | Int32Array;
      await writeFile(join(dir, `${name}.bin`), new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      spec[name] = { file: `${name}.bin`, dtype: tensor.dtype, shape: tensor.dims };
    }
    await writeFile(join(dir, 'feeds.json'), JSON.stringify(spec));
    const args = ['-m', 'diffid_reference.full_reference', '--build', buildJson, model, '--inputs', join(dir, 'feeds.json'), '--out', join(dir, 'out.f32'), '--repeat', String(o.repeat ?? 1)];
    if (o.threads) args.push('--threads', String(o.threads));
    if (o.device) args.push('--device', o.device);
    // torch.set_num_threads does not reach the BLAS library's own thread pool (OpenBLAS here).
    const threadEnv = o.threads ? { OMP_NUM_THREADS: String(o.threads), OPENBLAS_NUM_THREADS: String(o.threads), MKL_NUM_THREADS: String(o.threads) } : {};
    const { stdout } = await run(python, args, { cwd: PYTHON_DIR, maxBuffer: 1 << 20, env: { ...process.env, ...threadEnv } });
    const bytes = await readFile(join(dir, 'out.f32'));
    const { forward_ms } = JSON.parse(stdout) as { forward_ms: number[] };
    return { output: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4), forward_ms };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
