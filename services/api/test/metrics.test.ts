// Prometheus metrics: the API's (queue by state, refused requests by code) at /metrics without a
// key, and a worker's (waits, durations, outcomes, step time, output similarity, busy) on its port.
import t from 'tap';
import { serveMetrics } from '@diffid/gpu-worker';
import { keyRing, parseApiKeys } from '../src/auth.ts';
import { freePort } from '../src/free-port.ts';
import { postForm, startStack } from './harness.ts';
import { faceFile } from './images.ts';

const KEY = 'metrics-key-0123456789abcdef';
const value = (text: string, series: string) => Number(text.split('\n').find((line) => line.startsWith(`${series} `))?.slice(series.length + 1) ?? NaN);

t.test('a finished job and a refused request show in the API\'s and the worker\'s metrics', async (t) => {
  const s = await startStack(t, { access: { keys: keyRing(parseApiKeys(`ops:${KEY}`).tenants), rateLimitPerMinute: 1000, maxStreamsPerKey: 10 } });
  const auth = { authorization: `Bearer ${KEY}` };
  const fd = new FormData();
  fd.append('image', new Blob([await faceFile(1)]), 'a.jpg');
  for (const [k, v] of Object.entries({ prompt: 'x', steps: '4', num_images: '2', guidance_scale: '1' })) fd.append(k, v);
  const { id } = (await (await fetch(`${s.base}/generate`, { method: 'POST', body: fd, headers: auth })).json()) as { id: string };
  for (let i = 0; i < 400; i++) {
    const view = (await (await fetch(`${s.base}/jobs/${id}`, { headers: auth })).json()) as { status: string };
    if (view.status === 'succeeded') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.equal((await postForm(s.base, '/generate', { prompt: 'x' })).status, 401, 'a request without a key');
  const api = await fetch(`${s.base}/metrics`);
  t.equal(api.status, 200, '/metrics needs no key');
  const text = await api.text();
  t.equal(value(text, 'diffid_queue_jobs{state="completed"}'), 1, 'the completed job, read from Redis');
  t.equal(value(text, 'diffid_api_rejected_requests_total{code="DIFFID_ERR_UNAUTHORIZED"}'), 1, 'the refused request, by code');

  const port = await freePort();
  const server = await serveMetrics(s.worker!.metrics, port, '127.0.0.1');
  t.teardown(() => server.close());
  const worker = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  t.equal(value(worker, 'diffid_job_duration_seconds_count{kind="generate",outcome="ok"}'), 1);
  t.equal(value(worker, 'diffid_job_outcomes_total{kind="generate",code="ok"}'), 1);
  t.equal(value(worker, 'diffid_job_queue_wait_seconds_count{kind="generate"}'), 1);
  t.equal(value(worker, 'diffid_denoise_step_seconds_count'), 4, 'one per step: from its start to the next start, the last to the end');
  t.equal(value(worker, 'diffid_output_identity_similarity_count{kind="generate"}'), 2, 'one similarity per output');
  t.equal(value(worker, 'diffid_unet_calls_total'), 4, 'a U-Net call per step');
  t.equal(value(worker, 'diffid_unet_rows_total'), 8, 'two images, no guidance: two rows per call');
  t.equal(value(worker, 'diffid_worker_busy'), 0, 'idle again');
  const fullGcs = value(worker, 'diffid_inference_full_gc_total');
  t.ok(Number.isInteger(fullGcs) && fullGcs >= 0 && fullGcs === s.worker?.inference.gcStats().fullGcs, 'the inference thread\'s full collections, as the thread counts them');
  t.ok(value(worker, 'diffid_inference_full_gc_seconds_total') >= 0);
  t.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);
});
