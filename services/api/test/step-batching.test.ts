// DIFFID_BATCH_JOBS through the whole path: a worker that runs several jobs at once, their
// denoising steps in shared U-Net calls, gives every job the PNGs that one job at a time gives.
import t from 'tap';
import { finished, pollJob, postForm, startStack, type Stack } from './harness.ts';
import { faceFile } from './images.ts';

const JOBS = [
  { num_images: 1, steps: 12, seed: 1, guidance_scale: 5 },
  { num_images: 2, steps: 9, seed: 5, guidance_scale: 3 },
  { num_images: 1, steps: 10, seed: 9, guidance_scale: 1 },
  { num_images: 3, steps: 8, seed: 2, guidance_scale: 7 },
];

/** Submits every job at once; returns each job's view and PNGs. */
async function runAll(s: Stack, image: Uint8Array) {
  const ids = await Promise.all(
    JOBS.map(async (params) => {
      const res = await postForm(s.base, '/generate', { image: { bytes: image }, prompt: 'a portrait', ...params });
      return ((await res.json()) as { id: string }).id;
    }),
  );
  return Promise.all(
    ids.map(async (id) => {
      const view = await pollJob(s.base, id, finished);
      const urls = ((view.result?.images ?? []) as Array<{ url: string }>).map((i) => i.url);
      const pngs = await Promise.all(urls.map(async (u) => Buffer.from(await (await fetch(`${s.base}${u}`)).arrayBuffer())));
      return { view, pngs };
    }),
  );
}

t.test('with DIFFID_BATCH_JOBS=4 four jobs run together and give the PNGs they give one at a time', async (t) => {
  const image = await faceFile(4);
  // A slower U-Net (extra matrix products) keeps the jobs denoising long enough to overlap.
  const bundle = { burnMatmuls: 2 };
  const one = await startStack(t, { bundle, batchJobs: 1 });
  const four = await startStack(t, { bundle, batchJobs: 4 });
  const serial = await runAll(one, image);
  const batched = await runAll(four, image);
  t.same(batched.map((j) => j.view.status), ['succeeded', 'succeeded', 'succeeded', 'succeeded']);
  t.same(batched.map((j) => j.pngs.length), [1, 2, 1, 3], 'every image of every job');
  batched.forEach((job, k) => {
    t.ok(job.pngs.every((png, i) => png.equals(serial[k]?.pngs[i] as Buffer)), `job ${k}: byte-identical PNGs`);
    t.same(job.view.progress, { step: JOBS[k]?.steps, total: JOBS[k]?.steps }, `job ${k}: its own progress`);
  });
  const spans = (runs: typeof batched) => runs.map((j) => [Date.parse(j.view.started_at), Date.parse(j.view.finished_at)] as const);
  const overlapping = (runs: typeof batched) => {
    const s = spans(runs);
    return s.filter(([a], i) => s.some(([b, c], k) => k !== i && b <= a && a < c)).length;
  };
  t.equal(overlapping(serial), 0, 'one at a time, no job starts while another runs');
  const steps = JOBS.reduce((n, j) => n + j.steps, 0);
  t.same(one.worker?.inference.batchStats().calls, steps, `one at a time: a U-Net call per step, ${steps}`);
  const shared = four.worker?.inference.batchStats() as { calls: number; rows: number };
  t.ok(shared.calls < steps, `batched: ${shared.calls} U-Net calls for the same ${steps} steps`);
  t.equal(shared.rows, one.worker?.inference.batchStats().rows, 'the same rows evaluated in all');
  t.ok(overlapping(batched) >= 3, `batched, ${overlapping(batched)} of 4 jobs started while another was running`);
});

t.test('a job canceled inside a batch stops; the jobs batched with it finish with their own PNGs', async (t) => {
  const image = await faceFile(5);
  const bundle = { burnMatmuls: 20 };
  const long = { num_images: 1, steps: 40, seed: 3, guidance_scale: 4 };
  const others = [JOBS[0], JOBS[1]] as Array<(typeof JOBS)[number]>;
  const submit = async (s: Stack, params: Record<string, number>) =>
    ((await (await postForm(s.base, '/generate', { image: { bytes: image }, prompt: 'a portrait', ...params })).json()) as { id: string }).id;
  const pngsOf = async (s: Stack, id: string) => {
    const view = await pollJob(s.base, id, finished);
    const urls = ((view.result?.images ?? []) as Array<{ url: string }>).map((i) => i.url);
    return { view, pngs: await Promise.all(urls.map(async (u) => Buffer.from(await (await fetch(`${s.base}${u}`)).arrayBuffer()))) };
  };
  const one = await startStack(t, { bundle, batchJobs: 1 });
  const alone: Array<{ pngs: Buffer[] }> = [];
  for (const params of others) alone.push(await pngsOf(one, await submit(one, params)));

  const s = await startStack(t, { bundle, batchJobs: 3 });
  const victim = await submit(s, long);
  const ids = await Promise.all(others.map((params) => submit(s, params)));
  // Cancel once the long job is a few steps in, with its neighbours batched beside it.
  const running = await pollJob(s.base, victim, (v) => v.status === 'running' && v.progress.step >= 3);
  t.equal(running.status, 'running');
  t.equal((await fetch(`${s.base}/jobs/${victim}`, { method: 'DELETE' })).status, 200);
  const done = await Promise.all(ids.map((id) => pngsOf(s, id)));
  const canceled = await pollJob(s.base, victim, finished);
  t.equal(canceled.status, 'canceled', 'the canceled job stopped');
  t.ok(canceled.progress.step < long.steps, `it stopped at step ${canceled.progress.step} of ${long.steps}`);
  done.forEach((job, k) => {
    t.equal(job.view.status, 'succeeded', `job ${k} succeeded`);
    t.ok(job.pngs.length > 0 && job.pngs.every((png, i) => png.equals(alone[k]?.pngs[i] as Buffer)), `job ${k}: the PNGs it gives alone`);
    t.ok(Date.parse(job.view.started_at) < Date.parse(canceled.finished_at), `job ${k} was running beside it`);
  });
});
