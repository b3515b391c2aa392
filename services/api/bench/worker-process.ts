// A worker process (the built services/gpu-worker/dist/main.js) on a stack's Redis keys and bundle,
// as deployed: configured by its environment alone. Resolves once it logged "worker ready", with
// what it logged when its bundle loaded (where loading took time, its memory plan).
import { readFileSync } from 'node:fs';
import { TEST_REDIS_URL } from '@diffid/shared/testing';
import { spawnWorkerProcess } from '../test/harness.ts';

export interface WorkerProcess {
  /** Seconds from spawning the process to its "worker ready". */
  readySeconds: number;
  /** The worker's bundle_loaded log line. */
  loaded: Record<string, unknown>;
  /** The process's peak resident memory so far (VmHWM), in MB. */
  peakRssMb(): number;
  stop(): Promise<void>;
}

export async function workerProcess(stack: { prefix: string; queueName: string; bundleDir: string }, env: Record<string, string> = {}): Promise<WorkerProcess> {
  const started = performance.now();
  const child = spawnWorkerProcess({ ...process.env, REDIS_URL: TEST_REDIS_URL, DIFFID_REDIS_PREFIX: stack.prefix, DIFFID_QUEUE: stack.queueName, DIFFID_MODEL_DIR: stack.bundleDir, LOG_LEVEL: 'info', ...env });
  let output = '';
  const collect = (d: Buffer) => void (output += d.toString());
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  await new Promise<void>((resolve, reject) => {
    const ready = () => {
      if (!output.includes('"worker ready"')) return;
      child.stdout?.off('data', ready);
      resolve();
    };
    child.stdout?.on('data', ready);
    child.once('exit', (code) => reject(new Error(`the worker process exited (${code}) before it was ready:\n${output}`)));
  });
  const readySeconds = (performance.now() - started) / 1000;
  const line = output.split('\n').find((l) => l.includes('"msg":"bundle_loaded"'));
  const loaded = line ? (JSON.parse(line) as Record<string, unknown>) : {};
  // From here its output is read and dropped.
  child.stdout?.off('data', collect);
  child.stderr?.off('data', collect);
  child.stdout?.resume();
  child.stderr?.resume();
  return {
    readySeconds,
    loaded,
    peakRssMb: () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? Number.NaN) / 1024,
    stop: async () => {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}
