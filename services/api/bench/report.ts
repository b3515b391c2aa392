// The benchmark's figures as one object (what --json prints) and as the Markdown that
// docs/benchmarks.md carries between its bench markers.
import type { HostStepFigures } from '../../gpu-worker/bench/host-step.ts';
import type { LoadFigures } from './api-load.ts';

export interface JobFigures {
  bundle: string;
  job: string;
  runs: number;
  end_to_end_ms: number;
  worker_ms: number;
  inference_ms: number;
  onnxruntime_ms: number;
  stages_ms: Record<string, number>;
}

export interface BenchFigures {
  date: string;
  machine: { cores: number; cpu: string; node: string; intra_op_threads: number };
  host_ms_per_step?: HostStepFigures;
  torch_host_ms_per_step?: Record<string, { host_ms_per_step: number }> | { skipped: string };
  jobs?: JobFigures[];
  /** The demo bundle's generate of 4 images × 30 steps: the worker's time over onnxruntime's. */
  worker_over_onnxruntime?: number;
  queue_overhead_ms?: { jobs: number; p50: number; p95: number; poll_interval_ms: number };
  api?: { submissions: LoadFigures; status_reads: LoadFigures; upload_bytes: number };
  worker_memory?: { jobs: number; samples: Array<{ jobs: number; rss_mb: number; heap_used_mb: number; external_mb: number }> };
  batching?: {
    /** The proxy U-Net's own time per call by rows in the call. */
    proxy_ms_per_call_by_rows: Record<number, number>;
    runs: Array<{ batch_jobs: number; jobs: number; images_per_s: number; latency_p50_ms: number; latency_max_ms: number; rows_per_call: number }>;
    /** The 8 concurrent jobs' PNGs, batching on against off. */
    pngs_identical: boolean;
  };
}

const f = (x: number, digits = 0) => x.toFixed(digits);
const pct = (part: number, whole: number) => `${f((100 * part) / whole)} %`;

export function markdown(b: BenchFigures): string {
  const out: string[] = [`Measured ${b.date} on ${b.machine.cores} cores (${b.machine.cpu}), Node ${b.machine.node}, intra-op threads ${b.machine.intra_op_threads || 'default'}.`, ''];
  if (b.host_ms_per_step) {
    const Bs = ['B=2', 'B=8', 'B=16'] as const;
    const torch = b.torch_host_ms_per_step;
    const ours = b.host_ms_per_step;
    out.push(
      '### Host work per denoising step, SD 1.5 shapes',
      '',
      '| ms per step | B = 2 | B = 8 | B = 16 |',
      '|---|---|---|---|',
      `| this service, outside session.run | ${Bs.map((k) => f(ours[k].host_ms_per_step, 3)).join(' | ')} |`,
      `| (the stand-in U-Net, inside session.run) | ${Bs.map((k) => f(ours[k].run_ms_per_step, 3)).join(' | ')} |`,
    );
    if (torch && !('skipped' in torch)) {
      out.push(
        `| diffusers' loop in torch, outside the U-Net | ${Bs.map((k) => f(torch[k]?.host_ms_per_step ?? Number.NaN, 3)).join(' | ')} |`,
        `| torch ÷ this service | ${Bs.map((k) => f((torch[k]?.host_ms_per_step ?? Number.NaN) / ours[k].host_ms_per_step, 1)).join(' | ')} |`,
      );
    } else out.push(`| diffusers' loop in torch | ${torch && 'skipped' in torch ? torch.skipped : 'not run'} | | |`);
    out.push('');
  }
  if (b.jobs) {
    for (const bundle of [...new Set(b.jobs.map((j) => j.bundle))]) {
      const jobs = b.jobs.filter((j) => j.bundle === bundle);
      out.push(
        `### ${bundle}, medians of ${jobs[0]?.runs} runs`,
        '',
        '| job | end to end (ms) | worker (ms) | pipeline run (ms) | onnxruntime (ms) | worker ÷ onnxruntime | onnxruntime | host work in the run | around the run |',
        '|---|---|---|---|---|---|---|---|---|',
        ...jobs.map(
          (j) =>
            `| ${j.job} | ${f(j.end_to_end_ms)} | ${f(j.worker_ms)} | ${f(j.inference_ms)} | ${f(j.onnxruntime_ms)} | ${f(j.worker_ms / j.onnxruntime_ms, 2)} | ${pct(j.onnxruntime_ms, j.worker_ms)} | ${pct(j.inference_ms - j.onnxruntime_ms, j.worker_ms)} | ${pct(j.worker_ms - j.inference_ms, j.worker_ms)} |`,
        ),
        '',
        'Stages, as shares of the worker\'s time:',
        '',
        `| job | ${Object.keys(jobs[0]?.stages_ms ?? {}).join(' | ')} |`,
        `|---|${Object.keys(jobs[0]?.stages_ms ?? {}).map(() => '---').join('|')}|`,
        ...jobs.map((j) => `| ${j.job} | ${Object.keys(jobs[0]?.stages_ms ?? {}).map((s) => (j.stages_ms[s] === undefined ? '—' : pct(j.stages_ms[s] as number, j.worker_ms))).join(' | ')} |`),
        '',
      );
    }
    if (b.worker_over_onnxruntime !== undefined) out.push(`Demo bundle, generate 4 × 30: the worker's time is **${f(b.worker_over_onnxruntime, 2)} ×** its onnxruntime time.`, '');
  }
  if (b.queue_overhead_ms) {
    const q = b.queue_overhead_ms;
    out.push('### Queue overhead', '', `From the POST's answer to the poll that saw the job done, minus the worker's own time, over ${q.jobs} one-step jobs one at a time (polled every ${q.poll_interval_ms} ms): **p50 ${f(q.p50, 1)} ms, p95 ${f(q.p95, 1)} ms**.`, '');
  }
  if (b.api) {
    const row = (name: string, l: LoadFigures) => `| ${name} | ${f(l.requests_per_s)} | ${f(l.p50_ms)} | ${f(l.p99_ms)} | ${l.requests} | ${l.non_2xx} | ${l.errors} |`;
    out.push(
      `### API alone (no worker), autocannon from a second process, 10 connections × 5 s`,
      '',
      '| requests | per second | p50 (ms) | p99 (ms) | total | non-2xx | errors |',
      '|---|---|---|---|---|---|---|',
      row(`POST /generate, a ${b.api.upload_bytes}-byte JPEG`, b.api.submissions),
      row('GET /jobs/{id}', b.api.status_reads),
      '',
    );
  }
  if (b.worker_memory) {
    const m = b.worker_memory;
    out.push(
      `### Memory of the process (API, worker and inference thread) over ${m.jobs} jobs`,
      '',
      '| after jobs | RSS (MB) | main thread\'s JS heap after a full GC (MB) | external (MB) |',
      '|---|---|---|---|',
      ...m.samples.map((s) => `| ${s.jobs} | ${f(s.rss_mb)} | ${f(s.heap_used_mb)} | ${f(s.external_mb)} |`),
      '',
    );
  }
  if (b.batching) {
    const x = b.batching;
    const rowsList = Object.keys(x.proxy_ms_per_call_by_rows).map(Number);
    const at = (batchJobs: number, jobs: number) => x.runs.find((r) => r.batch_jobs === batchJobs && r.jobs === jobs);
    out.push(
      '### Step-level batching across jobs (demo bundle, its U-Net replaced by the proxy)',
      '',
      `The proxy U-Net alone, ms per call: ${rowsList.map((r) => `${r} row${r > 1 ? 's' : ''} ${f(x.proxy_ms_per_call_by_rows[r] as number, 1)}`).join(', ')}.`,
      '',
      '| concurrent jobs (1 image × 20 steps, guidance 5) | batching off: images/s | on (DIFFID_BATCH_JOBS=8): images/s | on ÷ off | off: latency p50 / max (ms) | on: latency p50 / max (ms) | on: rows per U-Net call |',
      '|---|---|---|---|---|---|---|',
      ...[...new Set(x.runs.map((r) => r.jobs))].map((jobs) => {
        const off = at(1, jobs);
        const on = at(8, jobs);
        if (!off || !on) return `| ${jobs} | | | | | | |`;
        return `| ${jobs} | ${f(off.images_per_s, 2)} | ${f(on.images_per_s, 2)} | ${f(on.images_per_s / off.images_per_s, 2)} | ${f(off.latency_p50_ms)} / ${f(off.latency_max_ms)} | ${f(on.latency_p50_ms)} / ${f(on.latency_max_ms)} | ${f(on.rows_per_call, 1)} |`;
      }),
      '',
      `The 8 concurrent jobs' PNGs with batching on and off: ${x.pngs_identical ? '**byte-identical**' : '**they differ**'}.`,
      '',
    );
  }
  return out.join('\n');
}
