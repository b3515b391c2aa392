import t from 'tap';
import { IDENTITY_FIELDS, JOB_INPUTS, JOB_KINDS, JOB_PRIORITY, SUBMITTED_JOB_KINDS, assertEveryKind, imageSeeds, inputLabel, inputNames, jobKeys, plannedCost, plannedImages, plannedSteps, uploadCount, type JobPayload, type PayloadOf } from '@diffid/shared/contract';
import { FORM_SCHEMAS, componentSchema, formSchema } from '@diffid/shared/openapi';

const generate: PayloadOf<'generate'> = { kind: 'generate', params: { prompt: '', negative_prompt: '', num_images: 3, steps: 25, guidance_scale: 5, seed: 1, photos: 2, on_missing_face: 'skip', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } };
const morph = (frames: number, steps: number): JobPayload => ({
  kind: 'morph',
  params: { alphas: Array.from({ length: frames }, (_, i) => i / Math.max(1, frames - 1)), strategy: 'slerp', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal', prompt: '', steps, seed: 1, pacing: 'linear', background: 'morph', animation: [], fps: 12, boomerang: false },
});
const compare: JobPayload = { kind: 'compare', params: { priority: 'normal' } };

t.test('planned steps: generate = steps, compare = 1, morph = steps × (1 inversion + ⌈frames / max batch⌉)', async (t) => {
  t.equal(plannedSteps(generate, 8), 25);
  t.equal(plannedSteps(generate, 1), 25, 'generate runs its images in one batch whatever the limit');
  t.equal(plannedSteps(compare, 8), 1);
  const table: Array<[number, number, number, number]> = [
    // frames, steps, max batch, planned
    [1, 50, 8, 100],
    [8, 50, 8, 100],
    [9, 50, 8, 150],
    [64, 10, 8, 90],
    [3, 20, 1, 80],
  ];
  for (const [frames, steps, maxBatch, planned] of table) t.equal(plannedSteps(morph(frames, steps), maxBatch), planned, `${frames} frames × ${steps} steps, batch ${maxBatch}`);
  const embeddingOnly = morph(9, 50) as PayloadOf<'morph'>;
  embeddingOnly.params.strategy = 'embedding_only';
  t.equal(plannedSteps(embeddingOnly, 8), 100, 'embedding_only inverts nothing: its two sampling batches only');
  t.equal(plannedCost(embeddingOnly), 450, 'and costs its frames alone');
});

t.test('image i of a generate job uses seed + i', async (t) => {
  t.same(imageSeeds({ seed: 7, num_images: 3 }), [7, 8, 9]);
  t.same(imageSeeds({ seed: 0, num_images: 1 }), [0]);
});

t.test('planned images and inputs per kind', async (t) => {
  t.equal(plannedImages(generate), 3);
  t.equal(plannedImages(morph(5, 10)), 5);
  t.equal(plannedImages(compare), 0);
  t.same(inputNames('generate'), ['image']);
  t.same(inputNames('morph'), ['image_a', 'image_b']);
  t.same(JOB_INPUTS.generate, { image: 'many' }, 'generate takes several photos of one person');
  t.same(formSchema(FORM_SCHEMAS.generate).maxFiles, { image: 4 }, '… up to 4 of them, as its form says');
  t.same(JOB_INPUTS.morph, { image_a: 'one', image_b: 'one' });
  t.equal(uploadCount(generate, 'image'), 2, "generate's photo count comes from its params");
  t.equal(uploadCount(compare, 'image_a'), 1);
  t.equal(inputLabel('image', 1, 2), 'image[1]');
  t.equal(inputLabel('image_a', 0, 1), 'image_a', 'a single upload is named by its field');
  for (const kind of Object.values(JOB_KINDS)) {
    t.ok(inputNames(kind).length > 0, `${kind} takes images`);
    t.ok(JOB_PRIORITY[kind] >= 1, `${kind} has a priority`);
  }
  t.throws(() => plannedSteps({ kind: 'paint' } as unknown as JobPayload, 8), /unknown job kind "paint"/);
});

t.test("a job's input keys are its uploads, under its own prefix and id", async (t) => {
  const keys = jobKeys('p', 'id1');
  t.same(keys.inputs(generate), ['p:job:id1:input:image', 'p:job:id1:input:image:1'], 'each photo the generate job has');
  const four: JobPayload = { ...generate, params: { ...generate.params, photos: 4 } };
  t.same(keys.inputs(four), ['p:job:id1:input:image', 'p:job:id1:input:image:1', 'p:job:id1:input:image:2', 'p:job:id1:input:image:3'], 'every photo generate may take');
  t.same(keys.inputs(morph(3, 10)), [keys.input('image_a'), keys.input('image_b')]);
  t.same(keys.inputs(compare), [keys.input('image_a'), keys.input('image_b')]);
  const id = '3f1c2a4e-8b7d-4c1e-9a2b-0d1e2f3a4b5c';
  const half: JobPayload = { ...compare, params: { identity_a: id } } as JobPayload;
  t.same(keys.inputs(half), [keys.input('image_b')], 'a side read from a stored identity has no upload of the job');
  t.same(keys.inputs({ kind: 'identity', params: { identity: id, photos: 3 } }), [], "an identity check's photos are the identity's");
  t.throws(() => assertEveryKind({ generate: () => 0, morph: () => 0, identity: () => 0 }, 'the table'), /^the table has no handler for job kind\(s\): compare$/);
  t.doesNotThrow(() => assertEveryKind({ generate: () => 0, morph: () => 0, compare: () => 0, identity: () => 0 }, 'the table'));
  // The contract says which field stands in for which file; IDENTITY_FIELDS, which types it, agrees.
  for (const kind of SUBMITTED_JOB_KINDS) {
    const form = componentSchema(FORM_SCHEMAS[kind]) as { properties: Record<string, { 'x-stands-in-for'?: string }> };
    const standIns = Object.entries(form.properties).flatMap(([name, p]) => (p['x-stands-in-for'] ? [[p['x-stands-in-for'], name]] : []));
    t.same(Object.fromEntries(standIns), Object.fromEntries(inputNames(kind).map((input) => [input, IDENTITY_FIELDS[input]])), `${kind}: x-stands-in-for is IDENTITY_FIELDS`);
  }
});

t.test('even pacing samples the frames twice: planned steps and cost count both passes', async (t) => {
  const even = (frames: number, steps: number): JobPayload => ({ kind: 'morph', params: { ...(morph(frames, steps).params as object), pacing: 'even' } as never });
  t.equal(plannedSteps(even(9, 50), 8), 50 * (1 + 2 * 2), 'one inversion run, then 2 passes of 2 batches');
  t.equal(plannedCost(even(24, 10)), 10 * (2 + 2 * 24));
  t.equal(plannedCost(morph(24, 10)), 10 * (2 + 24), 'linear: one pass');
  t.same(jobKeys('p', 'j').results(2), ['p:job:j:result:0', 'p:job:j:result:1', 'p:job:j:animation:webp', 'p:job:j:animation:gif', 'p:job:j:animation:mp4']);
});
