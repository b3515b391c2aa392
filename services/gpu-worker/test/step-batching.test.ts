// Step-level batching (runtime/unet-batch.ts): jobs denoised in one batch give the images they give
// alone, share U-Net calls, join and leave at step boundaries, and fail or stop one at a time.
import t, { type Test } from 'tap';
import { gaussianNoise } from '@diffid/shared/diffusion';
import { type GenerateParams } from '@diffid/shared/contract';
import { facePattern } from '@diffid/shared/testing';
import { loadBundle, type LoadedBundle } from '../src/runtime/bundle-loader.ts';
import { DIFFUSERS_FLAVOR, OPTIMUM_FLAVOR, type ExportFlavor } from '../src/bundles/tiny-graphs.ts';
import { generate } from '../src/pipelines/generate.ts';
import { stageContext, type StepHook } from '../src/stages/context.ts';
import { denoise } from '../src/stages/denoise.ts';
import { unetBatch, type UnetBatch } from '../src/runtime/unet-batch.ts';
import { tinyBundleDir } from './helpers.ts';

const base = { prompt: 'a portrait', negative_prompt: '', photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } as const;
const JOBS: GenerateParams[] = [
  { ...base, num_images: 1, steps: 6, guidance_scale: 5, seed: 1 },
  { ...base, num_images: 2, steps: 4, guidance_scale: 3, seed: 7 },
  { ...base, num_images: 1, steps: 5, guidance_scale: 1, seed: 11 },
];
const face = facePattern(3, 96, 96);

async function open(t: Test, flavor: ExportFlavor): Promise<LoadedBundle> {
  const bundle = await loadBundle(await tinyBundleDir(t, { flavor }));
  t.teardown(() => bundle.release());
  return bundle;
}

/** Each job's images as bytes, run alone, each in a batch of its own. */
async function alone(bundle: LoadedBundle, jobs: GenerateParams[]): Promise<Buffer[][]> {
  const out = [];
  for (const params of jobs) {
    const r = await generate(stageContext(bundle), { images: { image: [face] }, params });
    out.push(r.images.map((i) => Buffer.from(i.rgb.data)));
  }
  return out;
}

/** The largest difference in grey levels between two runs' images. */
function largestDifference(a: Buffer[][], b: Buffer[][]): number {
  let most = 0;
  a.forEach((job, j) => job.forEach((img, i) => img.forEach((v, k) => (most = Math.max(most, Math.abs(v - ((b[j]?.[i]?.[k] as number) ?? 1e9)))))));
  return most;
}

/** Starts job k when job 0 begins its step `at[k]` (job 0 starts at once). */
async function together(bundle: LoadedBundle, batch: UnetBatch, jobs: GenerateParams[], at: number[], hooks: StepHook[] = []): Promise<Array<Buffer[] | Error>> {
  const starts = jobs.map(() => {
    let resolve = () => {};
    const promise = new Promise<void>((r) => (resolve = r));
    return { promise, resolve };
  });
  starts[0]?.resolve();
  let leadSteps = 0;
  const lead: StepHook = () => {
    at.forEach((step, k) => {
      if (step === leadSteps) starts[k]?.resolve();
    });
    leadSteps++;
  };
  return Promise.all(
    jobs.map(async (params, k) => {
      await starts[k]?.promise;
      const hook = hooks[k] ?? (() => {});
      const onStep: StepHook = k === 0 ? () => (lead(), hook()) : hook;
      try {
        const r = await generate(stageContext(bundle, { batch, onStep }), { images: { image: [face] }, params });
        return r.images.map((i) => Buffer.from(i.rgb.data));
      } catch (err) {
        return err as Error;
      }
    }),
  );
}

for (const [name, flavor] of [['per-row float32 timestep', DIFFUSERS_FLAVOR], ['per-row int64 timestep', OPTIMUM_FLAVOR]] as const) {
  t.test(`${name}: jobs joining at different steps share U-Net calls and give the images they give alone`, async (t) => {
    const bundle = await open(t, flavor);
    const want = await alone(bundle, JOBS);
    const batch = unetBatch(bundle, 64);
    // Job 1 joins at job 0's step 2, job 2 at its step 3: each joins a batch already running.
    const got = await together(bundle, batch, JOBS, [0, 2, 3]);
    t.same(got.map((g) => (g instanceof Error ? g.message : g.length)), [1, 2, 1], 'every job finished with its images');
    t.equal(largestDifference(got as Buffer[][], want), 0, 'byte-identical to running alone');
    const separate = JOBS.reduce((n, j) => n + j.steps, 0);
    t.ok(batch.calls < separate, `${batch.calls} U-Net calls where the jobs alone make ${separate}`);
    t.ok(batch.rowsRun / batch.calls > 2, `${(batch.rowsRun / batch.calls).toFixed(2)} rows per call on average (one job alone has 2 or 4)`);
    t.equal(batch.members, 0, 'every job left the batch');
  });
}

t.test('scalar timestep: jobs at the same step share a call, jobs at different steps do not', async (t) => {
  const bundle = await open(t, { ...DIFFUSERS_FLAVOR, timestep: 'float32_scalar' });
  const d = bundle.dims;
  const request = (seed: number, steps: number) => ({
    latents: [gaussianNoise(seed, d.latentChannels * d.latentHeight * d.latentWidth)],
    conditioning: [gaussianNoise(seed + 1, d.conditioningTokens * d.conditioningWidth)],
    unconditional: [gaussianNoise(seed + 2, d.conditioningTokens * d.conditioningWidth)],
    guidanceScale: 4,
    steps,
  });
  const bytes = (zs: Float32Array[]) => Buffer.from((zs[0] as Float32Array).buffer);
  const want = [bytes(await denoise(stageContext(bundle), request(1, 6))), bytes(await denoise(stageContext(bundle), request(5, 6)))];
  // Started in the same turn: both join before either steps, so they are at the same step throughout.
  const inStep = unetBatch(bundle, 64);
  const ctx = stageContext(bundle, { batch: inStep });
  const got = await Promise.all([denoise(ctx, request(1, 6)), denoise(ctx, request(5, 6))]);
  t.same(got.map(bytes), want, 'byte-identical to running alone');
  t.equal(inStep.calls, 6, 'two jobs of 6 steps at the same steps: 6 calls');
  // The second joins at the first one's third step: the same schedule, two steps behind.
  const offset = unetBatch(bundle, 64);
  let second: Promise<Float32Array[]> | undefined;
  let steps = 0;
  const firstCtx = stageContext(bundle, {
    batch: offset,
    onStep: () => {
      if (++steps === 3) second = denoise(stageContext(bundle, { batch: offset }), request(5, 6));
    },
  });
  const first = denoise(firstCtx, request(1, 6));
  const got2 = [await first, await (second as Promise<Float32Array[]>)];
  t.same(got2.map(bytes), want, 'byte-identical to running alone');
  t.equal(offset.calls, 12, 'never at the same timestep: a call each');
});

t.test('a canceled job leaves the batch; its neighbours finish with the same images', async (t) => {
  const bundle = await open(t, DIFFUSERS_FLAVOR);
  const want = await alone(bundle, JOBS);
  const batch = unetBatch(bundle, 64);
  let steps = 0;
  const cancelAtThird: StepHook = () => {
    if (++steps === 3) throw new Error('canceled');
  };
  const got = await together(bundle, batch, JOBS, [0, 0, 1], [() => {}, cancelAtThird]);
  t.match(got[1], { message: 'canceled' }, 'the canceled job stopped');
  t.equal(largestDifference([got[0] as Buffer[], got[2] as Buffer[]], [want[0] as Buffer[], want[2] as Buffer[]]), 0, 'the others are unchanged');
  t.equal(batch.members, 0);
});

t.test("one job's bad input fails that job alone", async (t) => {
  const bundle = await open(t, DIFFUSERS_FLAVOR);
  const batch = unetBatch(bundle, 64);
  const ctx = stageContext(bundle, { batch });
  const d = bundle.dims;
  const latent = gaussianNoise(1, d.latentChannels * d.latentHeight * d.latentWidth);
  const context = gaussianNoise(2, d.conditioningTokens * d.conditioningWidth);
  const good = denoise(ctx, { latents: [latent], conditioning: [context], unconditional: [context], guidanceScale: 4, steps: 5 });
  const bad = denoise(ctx, { latents: [latent], conditioning: [context.subarray(1)], unconditional: [context], guidanceScale: 4, steps: 5 });
  await t.rejects(bad, /needs 2 conditioning rows of \d+/);
  const [z] = await good;
  const [solo] = await denoise(stageContext(bundle), { latents: [latent], conditioning: [context], unconditional: [context], guidanceScale: 4, steps: 5 });
  t.same(Buffer.from((z as Float32Array).buffer), Buffer.from((solo as Float32Array).buffer), 'the good job is untouched');
});

t.test('a call carries at most maxRows rows; a job that does not fit waits for room, and one larger than the bound runs alone', async (t) => {
  const bundle = await open(t, DIFFUSERS_FLAVOR);
  const want = await alone(bundle, JOBS);
  const batch = unetBatch(bundle, 4);
  const got = await together(bundle, batch, JOBS, [0, 0, 0]);
  t.equal(largestDifference(got as Buffer[][], want), 0);
  // Rows: job 0 has 2, job 1 has 4, job 2 has 1. Job 1 never shares (2 + 4 > 4); jobs 0 and 2 can.
  t.ok(batch.rowsRun / batch.calls <= 4, `${(batch.rowsRun / batch.calls).toFixed(2)} rows per call`);
  const tooBig = unetBatch(bundle, 1);
  const [big] = await together(bundle, tooBig, [JOBS[1] as GenerateParams], [0]);
  t.same(big, want[1], 'a 4-row job under a bound of 1 runs alone');
  t.equal(tooBig.rowsRun / tooBig.calls, 4);
});

t.test('jobs that reach a graph in the same turn share its call: two jobs started together make one call of each graph', async (t) => {
  const bundle = await open(t, DIFFUSERS_FLAVOR);
  const twins = [JOBS[0], { ...(JOBS[0] as GenerateParams), seed: 21, prompt: 'another prompt' }] as GenerateParams[];
  const want = await alone(bundle, twins);
  const calls: Record<string, number[]> = {};
  for (const role of Object.keys(bundle.graphs) as Array<keyof LoadedBundle['graphs']>) {
    const graph = bundle.graphs[role];
    if (!graph) continue;
    (bundle.graphs as Record<string, unknown>)[role] = {
      ...graph,
      run: (feeds: Record<string, { dims: number[] }>, into?: unknown) => {
        (calls[role] ??= []).push(Object.values(feeds)[0]?.dims[0] ?? 0);
        return graph.run(feeds as never, into as never);
      },
    };
  }
  const batch = unetBatch(bundle, 64);
  // Started in the same turn, as a worker starts the jobs it takes together.
  const got = await Promise.all(
    twins.map(async (params) => (await generate(stageContext(bundle, { batch }), { images: { image: [face] }, params })).images.map((i) => Buffer.from(i.rgb.data))),
  );
  t.equal(largestDifference(got, want), 0, 'byte-identical to running alone');
  t.same(calls.vae_decoder, [2], 'one VAE call decodes both jobs');
  t.same(calls.text_encoder, [4], "one text-encoder call encodes both jobs' prompt and negative prompt");
  t.same(calls.unet?.length, 6, 'one U-Net call per step for both');
  t.same(calls.unet?.[0], 4, 'of 4 rows');
});
