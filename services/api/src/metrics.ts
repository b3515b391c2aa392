// The API's Prometheus metrics (prom-client): the queue as Redis holds it, read at each scrape,
// and the requests this process refused, by error code. Job timings, outcomes and output
// similarity are the workers' (services/gpu-worker/src/metrics.ts).
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export interface ApiMetrics {
  registry: Registry;
  rejected: Counter<'code'>;
}

/** A registry whose queue gauges read `counts` at scrape time. */
export function createApiMetrics(counts: () => Promise<Record<string, number>>): ApiMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'diffid_api_' });
  new Gauge({
    name: 'diffid_queue_jobs',
    help: 'Jobs in the queue by state, as Redis holds them at the scrape',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      for (const [state, n] of Object.entries(await counts().catch(() => ({})))) this.set({ state }, n);
    },
  });
  const rejected = new Counter({ name: 'diffid_api_rejected_requests_total', help: 'Requests refused, by error code', labelNames: ['code'], registers: [registry] });
  return { registry, rejected };
}
