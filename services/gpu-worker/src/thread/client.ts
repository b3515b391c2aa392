// The main thread's handle on the inference thread: starts it, sends jobs, relays progress,
// sets cancel flags, and restarts the thread if it dies (in-flight work fails as retryable).

import { setFlagsFromString } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { DiffIdError, canceled, errorKeyOf, isCanceled } from '@diffid/shared/contract';
import { SETTINGS } from '@diffid/shared/settings';
import type { InferenceJob } from '../pipelines/pipeline.ts';
import { THREAD_STATS, THREAD_STATS_BYTES, CONTROL, CONTROL_BYTES, type InferenceOutput, type ThreadMessage, type MainMessage, type ThreadOptions } from './protocol.ts';
import type { Rgb } from '../vision/pixels.ts';
import type { ImageProvenance } from '../stages/context.ts';

// Built code (dist/*.js) starts the thread's module itself. Under tsx (development and tests) a
// worker thread does not inherit tsx's loader, so a plain-JS shim registers it first.
const BUILT = import.meta.url.endsWith('.js');
const THREAD_ENTRY = new URL(BUILT ? './inference-thread.js' : './inference-thread.ts', import.meta.url);
const THREAD_BOOT = new URL('./boot.mjs', import.meta.url);

/** The thread died under the job: worth retrying elsewhere or later. */
export class InferenceThreadLost extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InferenceThreadLost';
  }
}

export interface RunOptions {
  /** Aborting it stops the job at its next step; the run then rejects with a cancellation (see `canceled`). */
  signal?: AbortSignal;
  /**
   * Steps done and planned, sampled from the job's control block every PROGRESS_INTERVAL_MS while
   * it runs, when the count moved (not once per step: a message per step cost the thread time).
   */
  onProgress?: (step: number, total: number) => void;
  /**
   * Output image `index`, as soon as its pixels are final (the thread then goes on scoring it,
   * or rendering the next frames): what its PNG needs, early. The result carries it again.
   */
  onImage?: (index: number, rgb: Rgb, provenance: ImageProvenance) => void;
}

/** How often a running job's progress is read and passed on. */
export const PROGRESS_INTERVAL_MS = 200;

type Ready = Extract<ThreadMessage, { type: 'ready' }>;

export interface InferenceClient {
  readonly bundle: Ready['bundle'];
  /** The first thread's start: where its load took time, and its memory plan. */
  readonly startup: Pick<Ready, 'load' | 'memory'>;
  run(job: InferenceJob, options?: RunOptions): Promise<InferenceOutput>;
  /** U-Net calls the thread has made in its batch, and rows evaluated in them. */
  batchStats(): { calls: number; rows: number };
  /** The thread's full garbage collections (mark-compacts) and their pauses in seconds. */
  gcStats(): { fullGcs: number; seconds: number };
  /**
   * Replaces the inference thread with a fresh one that loads the bundle again from disk. A job
   * in flight fails as retryable (BullMQ runs it again); resolves once the new thread is ready.
   */
  restart(): Promise<void>;
  close(): Promise<void>;
}

interface Pending {
  onImage: NonNullable<RunOptions['onImage']>;
  resolve: (o: InferenceOutput) => void;
  reject: (e: Error) => void;
  cancel: () => void;
  /** Set when the thread is being replaced: a stop then means "retry", not "canceled". */
  superseded: boolean;
  /** Resolves once the job has ended, whichever way. */
  settled: Promise<void>;
}

function spawn(options: ThreadOptions, threadStats: SharedArrayBuffer): Worker {
  // onnxruntime-node copies every output into a new buffer (a demo generate of 4 × 30 allocates
  // ~50 MB of them). From V8's default start, sized for the thread's ~9 MB heap, the thread ran a
  // full mark-compact in every such job — about 5 ms of its 20 ms of host work; from 256 MB, one
  // in 150 jobs, for 54 MB more resident memory (docs/benchmarks.md). V8 reads the flag when it
  // configures a new isolate's heap: it sizes the thread about to start, not the running main thread.
  setFlagsFromString(`--initial-old-space-size=${options.heapMb ?? SETTINGS.inferenceHeapMb.default}`);
  if (BUILT) return new Worker(THREAD_ENTRY, { workerData: { options, threadStats } });
  return new Worker(THREAD_BOOT, { workerData: { entry: THREAD_ENTRY.href, options, threadStats } });
}

function waitReady(worker: Worker): Promise<Ready> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: ThreadMessage) => {
      if (m.type === 'ready') {
        cleanup();
        resolve(m);
      } else if (m.type === 'fatal') {
        cleanup();
        void worker.terminate();
        reject(new DiffIdError(errorKeyOf(m.code), m.message));
      }
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onExit = (code: number) => {
      cleanup();
      reject(new Error(`the inference thread exited with code ${code} before it was ready`));
    };
    const cleanup = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}

/** Starts the inference thread and resolves once its bundle is loaded. */
export async function startInference(options: ThreadOptions): Promise<InferenceClient> {
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let closing = false;
  const threadStats = new SharedArrayBuffer(THREAD_STATS_BYTES);
  const counters = new BigInt64Array(threadStats);
  let worker = spawn(options, threadStats);
  const { bundle, load, memory } = await waitReady(worker);
  let ready: Promise<unknown> = Promise.resolve();

  const attach = (w: Worker) => {
    w.on('message', (m: ThreadMessage) => {
      if (!('requestId' in m)) return;
      const p = pending.get(m.requestId);
      if (!p) return;
      if (m.type === 'image') return p.onImage(m.index, m.rgb, m.provenance);
      pending.delete(m.requestId);
      if (m.type === 'done') return p.resolve(m.output);
      const err = new DiffIdError(errorKeyOf(m.code), m.message);
      // Stopped because the thread is being replaced, not because anyone canceled: run it again.
      p.reject(isCanceled(err) && p.superseded ? new InferenceThreadLost('the inference thread was replaced during the job') : err);
    });
    w.on('exit', (code) => {
      for (const p of pending.values()) p.reject(new InferenceThreadLost(`the inference thread exited (code ${code}) during the job`));
      pending.clear();
      if (closing) return;
      const next = spawn(options, threadStats);
      worker = next;
      ready = waitReady(next).then(
        () => attach(next),
        (err: Error) => {
          process.emitWarning(`the inference thread could not restart: ${err.message}`);
        },
      );
    });
  };
  attach(worker);

  return {
    bundle,
    startup: { load, memory },
    batchStats: () => ({ calls: Number(Atomics.load(counters, THREAD_STATS.CALLS)), rows: Number(Atomics.load(counters, THREAD_STATS.ROWS)) }),
    gcStats: () => ({ fullGcs: Number(Atomics.load(counters, THREAD_STATS.FULL_GCS)), seconds: Number(Atomics.load(counters, THREAD_STATS.FULL_GC_MICROS)) / 1e6 }),
    run(job, { signal, onProgress = () => {}, onImage = () => {} } = {}) {
      if (signal?.aborted) return Promise.reject(canceled());
      const requestId = nextId++;
      const shared = new SharedArrayBuffer(CONTROL_BYTES);
      const control = new Int32Array(shared);
      const stop = () => Atomics.store(control, CONTROL.CANCEL, 1);
      signal?.addEventListener('abort', stop, { once: true });
      // Progress is read from the control block, at most every PROGRESS_INTERVAL_MS and only when it moved.
      let reported = -1;
      const sample = () => {
        const step = Atomics.load(control, CONTROL.STEP);
        const total = Atomics.load(control, CONTROL.TOTAL);
        if (total > 0 && step !== reported) {
          reported = step;
          onProgress(step, total);
        }
      };
      const sampler = setInterval(sample, PROGRESS_INTERVAL_MS);
      let entry: Pending | undefined;
      const result = new Promise<InferenceOutput>((resolve, reject) => {
        entry = { onImage, resolve, reject, cancel: stop, superseded: false, settled: Promise.resolve() };
      });
      (entry as Pending).settled = result.then(
        () => undefined,
        () => undefined,
      );
      void (entry as Pending).settled.then(() => {
        clearInterval(sampler);
        signal?.removeEventListener('abort', stop);
      });
      pending.set(requestId, entry as Pending);
      const request: MainMessage = { type: 'run', requestId, job, control: shared };
      worker.postMessage(request);
      return result;
    },
    async restart() {
      // Terminating a thread inside session.run aborts the whole process (onnxruntime's native
      // code throws past N-API): stop the jobs at their next step first, then replace the thread.
      const inFlight = [...pending.values()];
      for (const p of inFlight) {
        p.superseded = true;
        p.cancel();
      }
      await Promise.all(inFlight.map((p) => p.settled));
      const old = worker;
      await old.terminate();
      // The exit handler has spawned the replacement by now, or does so in this turn.
      while (worker === old) await new Promise((r) => setImmediate(r));
      await ready;
    },
    async close() {
      closing = true;
      await worker.terminate();
    },
  };
}
