// Where the PyTorch side (services/gpu-worker/python, the benchmarks' torch loop) finds a Python.
import { spawnSync } from 'node:child_process';

/**
 * A Python that imports torch and onnx: DIFFID_PYTHON, Debian's own, or the one on PATH — in that
 * order, because a python3 on PATH (pyenv's, say) often lacks the Debian packages.
 */
export function torchPython(): string | undefined {
  for (const candidate of [process.env.DIFFID_PYTHON, '/usr/bin/python3', 'python3']) {
    if (candidate && spawnSync(candidate, ['-c', 'import torch, onnx'], { stdio: 'ignore' }).status === 0) return candidate;
  }
  return undefined;
}

/** Why the PyTorch side is skipped, for messages. */
export const NO_TORCH_PYTHON = 'no Python with torch and onnx (Debian: apt-get install python3-torch python3-onnx, or set DIFFID_PYTHON)';
