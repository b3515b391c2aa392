// A worker's Prometheus metrics (prom-client), served on DIFFID_WORKER_METRICS_PORT: how long jobs
// waited and ran, how they ended, how long a denoising step takes, how similar outputs are to
// their source faces, how many jobs the worker is running, how full its U-Net calls are, and how
// often full garbage collections pause the inference thread.
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface WorkerMetrics {
  registry: Registry;
  wait: Histogram<'kind'>;
  duration: Histogram<'kind' | 'outcome'>;
  outcomes: Counter<'kind' | 'code'>;
  step: Histogram;
  similarity: Histogram<'kind'>;
  busy: Gauge;
}

/**
 * The worker's metrics; `batchStats` reports the inference thread's U-Net calls and their rows,
 * `gcStats` its full garbage collections (both read when scraped).
 */
export function createWorkerMetrics(
  batchStats: () => { calls: number; rows: number } = () => ({ calls: 0, rows: 0 }),
  gcStats: () => { fullGcs: number; seconds: number } = () => ({ fullGcs: 0, seconds: 0 }),
): WorkerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'diffid_worker_' });
  const registers = [registry];
  // Counted by the inference thread in shared memory; read at scrape time.
  const scraped = (name: string, help: string, read: () => number) =>
    new Counter({ name, help, registers, collect() {
      this.reset();
      this.inc(read());
    } });
  scraped('diffid_unet_calls_total', 'U-Net calls made by the denoising batch', () => batchStats().calls);
  scraped('diffid_unet_rows_total', 'U-Net rows evaluated (both guidance branches count); ÷ calls is the mean batch', () => batchStats().rows);
  scraped('diffid_inference_full_gc_total', 'Full garbage collections (mark-compacts) of the inference thread', () => gcStats().fullGcs);
  scraped('diffid_inference_full_gc_seconds_total', 'Time the inference thread spent paused in full garbage collections', () => gcStats().seconds);
  return {
    registry,
    wait: new Histogram({ name: 'diffid_job_queue_wait_seconds', help: 'From submit to a worker starting the job', labelNames: ['kind'], buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 1800, 7200], registers }),
    duration: new Histogram({ name: 'diffid_job_duration_seconds', help: 'A run of a job in the worker, by how it ended', labelNames: ['kind', 'outcome'], buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900], registers }),
    outcomes: new Counter({ name: 'diffid_job_outcomes_total', help: 'Job runs by how they ended: ok, or the error code', labelNames: ['kind', 'code'], registers }),
    step: new Histogram({ name: 'diffid_denoise_step_seconds', help: 'Time between denoising steps of a job (one U-Net batch)', buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5], registers }),
    similarity: new Histogram({ name: 'diffid_output_identity_similarity', help: 'ArcFace cosine similarity of each output to its source face(s)', labelNames: ['kind'], buckets: [-0.2, 0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1], registers }),
    busy: new Gauge({ name: 'diffid_worker_busy', help: 'jobs the worker is running (up to DIFFID_BATCH_JOBS)', registers }),
  };
}

/** Serves GET /metrics on a port of its own (the worker has no other HTTP). */
export function serveMetrics(metrics: WorkerMetrics, port: number, host = '0.0.0.0'): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('GET /metrics\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  return new Promise((resolve) => server.listen(port, host, () => resolve(server)));
}
