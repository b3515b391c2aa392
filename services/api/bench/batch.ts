// npm run bench -- --batch: a batch of 1,000 morphs of stored identities on the demo bundle, as a
// deployment runs it — the API with a key and its default limits (jobs enter in waves of
// DIFFID_MAX_JOBS_PER_KEY), worker processes of their own — with 1 worker and with 2. It measures
// morphs per second from POST /batches to the batch's end, Redis's memory at its peak over its
// memory before, and, while results.zip streams, this process's (the API's) resident memory over
// what it was before, beside the archive's size.
import { DEFAULT_SETTINGS } from '@diffid/shared/settings';
import { encodeImage } from '@diffid/shared/image';
import { facePattern } from '@diffid/shared/testing';
import { buildDemoBundle } from '@diffid/gpu-worker';
import { MB, admissionLimits } from '@diffid/shared/admission';
import { keyRing, parseApiKeys } from '../src/auth.ts';
import { openStack, postForm } from '../test/harness.ts';
import { workerProcess } from './worker-process.ts';

export interface BatchRun {
  workers: number;
  morphs: number;
  seconds: number;
  morphs_per_s: number;
  redis_peak_mb: number;
  zip_mb: number;
  zip_seconds: number;
  /** The API process's resident memory while the zip streamed, at its peak, over before. */
  zip_rss_growth_mb: number;
}

export interface BatchFigures {
  steps: number;
  identities: number;
  runs: BatchRun[];
}

const KEY = 'bench-key-0123456789abcdef';

async function usedMemory(redis: { info(section: string): Promise<string> }): Promise<number> {
  return Number(/^used_memory:(\d+)/m.exec(await redis.info('memory'))?.[1] ?? 0);
}

export async function batchBench(o: { morphs: number; steps: number; workers: number[]; intraOpThreads: number; log: (line: string) => void }): Promise<BatchFigures> {
  // Enough identities that their pairs cover the batch: n(n−1)/2 ≥ morphs.
  const identities = Math.ceil((1 + Math.sqrt(1 + 8 * o.morphs)) / 2);
  const runs: BatchRun[] = [];
  for (const workers of o.workers) {
    const stack = await openStack({
      build: buildDemoBundle,
      worker: false,
      access: { keys: keyRing(parseApiKeys(`bench:${KEY}`).tenants), rateLimitPerMinute: DEFAULT_SETTINGS.rateLimitPerMinute, maxStreamsPerKey: DEFAULT_SETTINGS.maxStreamsPerKey },
      limits: admissionLimits(DEFAULT_SETTINGS),
    });
    // One onnxruntime thread per operator in every worker (unless BENCH_INTRA_OP says), so that the
    // runs differ in their workers alone.
    const procs = await Promise.all(Array.from({ length: workers }, () => workerProcess(stack, { DIFFID_INTRA_OP_THREADS: String(o.intraOpThreads || 1) })));
    const auth = { authorization: `Bearer ${KEY}` };
    try {
      o.log(`batch: ${identities} identities, ${workers} worker(s)`);
      const ids: string[] = [];
      for (let i = 0; i < identities; i++) {
        const made = (await (await postForm(stack.base, '/identities', { image: { bytes: await encodeImage(facePattern(1000 + i, 256, 256), 'jpeg') } }, { ...auth, prefer: 'wait=60' })).json()) as { id: string; status: string };
        if (made.status !== 'ready') throw new Error(`identity ${i} is ${made.status}`);
        ids.push(made.id);
      }
      const pairs: string[][] = [];
      for (let a = 0; a < ids.length && pairs.length < o.morphs; a++) for (let b = a + 1; b < ids.length && pairs.length < o.morphs; b++) pairs.push([ids[a] as string, ids[b] as string]);
      const before = await usedMemory(stack.redis);
      let peak = before;
      const t0 = performance.now();
      const res = await fetch(`${stack.base}/batches`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'morph', pairs, alphas: [0.5], steps: o.steps, seed: 1 }) });
      const batch = (await res.json()) as { id: string; status: string; counts: Record<string, number> };
      if (res.status !== 202) throw new Error(`POST /batches: ${res.status} ${JSON.stringify(batch)}`);
      let view = batch;
      let polls = 0;
      while (view.status === 'running') {
        await new Promise((r) => setTimeout(r, 1000));
        peak = Math.max(peak, await usedMemory(stack.redis));
        view = (await (await fetch(`${stack.base}/batches/${batch.id}`, { headers: auth })).json()) as typeof batch;
        if (++polls % 30 === 0) o.log(`batch: ${JSON.stringify(view.counts)}`);
      }
      const seconds = (performance.now() - t0) / 1000;
      if (view.counts.succeeded !== o.morphs) throw new Error(`the batch ended with ${JSON.stringify(view.counts)}`);

      // The archive, read as a client would, while this process's memory is sampled.
      (globalThis as { gc?: () => void }).gc?.();
      const rss0 = process.memoryUsage.rss();
      let rssPeak = rss0;
      const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage.rss())), 20);
      const z0 = performance.now();
      const zip = await fetch(`${stack.base}/batches/${batch.id}/results.zip`, { headers: auth });
      let bytes = 0;
      for await (const chunk of zip.body as unknown as AsyncIterable<Uint8Array>) bytes += chunk.length;
      clearInterval(sampler);
      runs.push({
        workers,
        morphs: o.morphs,
        seconds,
        morphs_per_s: o.morphs / seconds,
        redis_peak_mb: (peak - before) / MB,
        zip_mb: bytes / MB,
        zip_seconds: (performance.now() - z0) / 1000,
        zip_rss_growth_mb: (rssPeak - rss0) / MB,
      });
      o.log(`batch: ${JSON.stringify(runs.at(-1))}`);
    } finally {
      await Promise.all(procs.map((p) => p.stop()));
      await stack.close();
    }
  }
  return { steps: o.steps, identities, runs };
}

const f = (x: number, digits = 0) => x.toFixed(digits);

/** The section docs/benchmarks.md carries between its bench:batch markers. */
export function batchMarkdown(b: BatchFigures, machine: string): string {
  const rows = b.runs.map((r) => `| ${r.workers} | ${r.morphs} | ${f(r.seconds)} s | ${f(r.morphs_per_s, 2)} | ${f(r.redis_peak_mb, 1)} MB | ${f(r.zip_mb, 1)} MB in ${f(r.zip_seconds, 1)} s | ${f(r.zip_rss_growth_mb, 1)} MB |`);
  const [one, two] = [b.runs.find((r) => r.workers === 1), b.runs.find((r) => r.workers === 2)];
  return [
    `A morph batch of ${b.runs[0]?.morphs ?? 0} pairs of ${b.identities} stored identities, one factor (0.5), ${b.steps} steps, on the demo bundle; ${machine}. The key has the default limits, so its jobs enter in waves of ${DEFAULT_SETTINGS.maxJobsPerKey}.`,
    '',
    '| workers | morphs | batch took | morphs/s | Redis at peak (over before) | results.zip | API memory while it streamed |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
    one && two
      ? `Each worker runs one onnxruntime thread per operator; two workers give ×${f(two.morphs_per_s / one.morphs_per_s, 2)} the morphs per second of one. Workers take jobs from the one queue, so a batch scales with them until the machine's cores (here two) or GPUs are all busy; the API's feeder queues a wave each second, well ahead of them.`
      : '',
  ].join('\n');
}
