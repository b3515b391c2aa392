// The form reader and the parsers behind the job routes, without Redis or a queue: a bare Fastify
// app with only the multipart plugin and one route that reads a form and settles it into a job's
// parameters, as the job routes do, and returns what came of it.
import t, { type Test } from 'tap';
import multipart from '@fastify/multipart';
import Fastify from 'fastify';
import { DiffIdError, type JobKind } from '@diffid/shared/contract';
import { faceIndexes, morphAlphas, settleJob } from '@diffid/shared/job-params';
import { FORM_SCHEMAS } from '@diffid/shared/openapi';
import { MAX_FILE_BYTES, formReader } from '../src/forms.ts';
import { preferWait } from '../src/routes/job-routes.ts';
import { faceFile } from './images.ts';

type MorphFactorFields = Parameters<typeof morphAlphas>[0];
/** A form's fields settled into a job's parameters, as the job routes do it. */
const settleMorph = (fields: Record<string, unknown>) => settleJob('morph', fields, { files: { image_a: [null], image_b: [null] }, bundle: null });
const settleGenerate = (fields: Record<string, unknown>, photos: number) => settleJob('generate', { prompt: 'a photo', ...fields }, { files: { image: Array.from({ length: photos }, () => null) }, bundle: null });

t.test('morph factors: exactly one of alpha, alphas or frames', async (t) => {
  const ok: Array<[MorphFactorFields, number[]]> = [
    [{ alpha: 0.25 }, [0.25]],
    [{ frames: 5 }, [0, 0.25, 0.5, 0.75, 1]],
    [{ frames: 2 }, [0, 1]],
    [{ alphas: '0, 0.5 ,1' }, [0, 0.5, 1]],
    [{ alphas: '1' }, [1]],
  ];
  for (const [fields, want] of ok) t.same(morphAlphas(fields), want, JSON.stringify(fields));
  const bad: Array<[MorphFactorFields, RegExp]> = [
    [{}, /one of alpha, alphas or frames/],
    [{ alpha: 0.1, frames: 3 }, /not alpha and frames/],
    [{ alphas: '0,,1' }, /"" is not/],
    [{ alphas: '0,1.5' }, /"1.5" is not/],
    [{ alphas: '0,x' }, /"x" is not/],
  ];
  for (const [fields, message] of bad) {
    t.throws(() => morphAlphas(fields), message, JSON.stringify(fields).slice(0, 60));
    t.throws(() => morphAlphas(fields), DiffIdError);
    t.throws(() => settleMorph(fields), message, `settled: ${JSON.stringify(fields).slice(0, 60)}`);
  }
  // How many factors a job may have is the MorphParams schema's limit, checked when the job is settled.
  const tooMany = { alphas: Array.from({ length: 65 }, () => '0.5').join(',') };
  t.throws(() => settleMorph(tooMany), /at most 64 values \(got 65\)/);
  t.throws(() => settleMorph(tooMany), DiffIdError);
  t.same(settleMorph({ alphas: '0, 0.5 ,1' }).params.alphas, [0, 0.5, 1]);
});

t.test('face_index for /generate: one per photo, each at most the limit', async (t) => {
  t.equal(faceIndexes({}, 2), undefined, 'left out: the largest face of each photo');
  t.same(faceIndexes({ face_index: '1' }, 1), [1]);
  t.same(faceIndexes({ face_index: '0,2,1' }, 3), [0, 2, 1]);
  t.throws(() => faceIndexes({ face_index: '1' }, 2), /one index per photo: 2 photo\(s\), 1 index\(es\) given/);
  // The highest index is the GenerateParams schema's limit, checked when the job is settled.
  t.throws(() => settleGenerate({ face_index: '64' }, 1), /must be ≤ 63/);
  t.throws(() => settleGenerate({ face_index: '1' }, 2), /one index per photo: 2 photo\(s\), 1 index\(es\) given/);
  t.same(settleGenerate({ face_index: '63,0' }, 2).params.face_index, [63, 0]);
});

t.test('Prefer: wait=N is read as RFC 7240 says, capped at 60 s', async (t) => {
  const table: Array<[string | string[] | undefined, number | undefined]> = [
    [undefined, undefined],
    ['', undefined],
    ['wait=5', 5],
    ['respond-async, wait=10', 10],
    ['WAIT = "7"', 7],
    ['wait=600', 60],
    [['handling=lenient', 'wait=3'], 3],
    ['return=minimal', undefined],
    ['nowait=3', undefined],
  ];
  for (const [header, want] of table) t.equal(preferWait(header), want, JSON.stringify(header));
});

async function formApp(t: Test, kind: JobKind) {
  const app = Fastify({ logger: false });
  await app.register(multipart, { limits: { fileSize: MAX_FILE_BYTES } });
  const read = formReader(FORM_SCHEMAS[kind]);
  app.post('/form', async (request, reply) => {
    try {
      const { fields, files } = await read(request);
      const { form, params } = settleJob(kind, fields, { files, bundle: null });
      return { fields: form, params, files: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, v.map((b) => b.length)])) };
    } catch (err) {
      const e = err as DiffIdError;
      return reply.code(e.status ?? 500).send({ code: e.code, message: e.message });
    }
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  const address = app.server.address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/form`;
}

t.test('the generate form: numbers coerced from text, files by name, every problem named', async (t) => {
  const url = await formApp(t, 'generate');
  const jpeg = await faceFile(1);
  const post = async (fields: Record<string, string>, files: Record<string, Uint8Array | Uint8Array[]> = { image: jpeg }) => {
    const form = new FormData();
    for (const [k, v] of Object.entries(files)) for (const bytes of [v].flat()) form.append(k, new Blob([bytes]), `${k}.jpg`);
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    const res = await fetch(url, { method: 'POST', body: form });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };
  const good = await post({ prompt: 'a photo', num_images: '3', steps: '12', guidance_scale: '4.5', seed: '9' });
  t.equal(good.status, 200);
  // The form's defaults are filled in (steps and guidance_scale would be the bundle's, with one).
  t.same(good.body.fields, { prompt: 'a photo', num_images: 3, steps: 12, guidance_scale: 4.5, seed: 9, negative_prompt: '', on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' });
  t.same(good.body.params, { prompt: 'a photo', negative_prompt: '', num_images: 3, steps: 12, guidance_scale: 4.5, seed: 9, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' });
  t.same(good.body.files, { image: [jpeg.length] });
  const other = await faceFile(2);
  const several = await post({ prompt: 'a photo', face_index: '0,1', on_missing_face: 'skip' }, { image: [jpeg, other] });
  t.equal(several.status, 200);
  t.same(several.body.files, { image: [jpeg.length, other.length] }, 'the image field repeated: both photos, in order');
  t.match(several.body.fields, { prompt: 'a photo', face_index: '0,1', on_missing_face: 'skip' });
  t.match(several.body.params, { photos: 2, face_index: [0, 1], on_missing_face: 'skip' }, 'one face index per photo');

  const cases: Array<[Record<string, string>, Record<string, Uint8Array | Uint8Array[]> | undefined, string, RegExp]> = [
    [{ prompt: 'x' }, { image: [jpeg, jpeg, jpeg, jpeg, jpeg] }, 'DIFFID_ERR_UNEXPECTED_FIELD', /"image" is given more than 4 times/],
    [{ prompt: 'x', face_index: '0,1,2,3,4' }, undefined, 'DIFFID_ERR_VALIDATION', /"face_index" is not in the expected form/],
    [{ prompt: 'x', face_index: '-1' }, undefined, 'DIFFID_ERR_VALIDATION', /"face_index" is not in the expected form/],
    [{ prompt: 'x', face_index: 'abc' }, undefined, 'DIFFID_ERR_VALIDATION', /^"face_index" is not in the expected form \(got "abc"\)\. The face to use in each photo, counted left to right from 0 \(see `result\.inputs`\), one per photo, comma-separated \(e\.g\. `1` or `0,2`\)\. Default — the largest face\.$/],
    [{ prompt: 'x', on_missing_face: 'ignore' }, undefined, 'DIFFID_ERR_VALIDATION', /"on_missing_face" must be one of fail, skip/],
    [{ prompt: 'x', num_images: '9' }, undefined, 'DIFFID_ERR_VALIDATION', /"num_images" must be ≤ 8 \(got 9\)/],
    [{ prompt: 'x', steps: 'many' }, undefined, 'DIFFID_ERR_VALIDATION', /"steps" must be a whole number/],
    [{ prompt: 'x'.repeat(1001) }, undefined, 'DIFFID_ERR_PROMPT_TOO_LONG', /longer than 1000 characters/],
    [{ prompt: 'x', color: 'red' }, undefined, 'DIFFID_ERR_UNEXPECTED_FIELD', /"color" is not a field/],
    [{ prompt: 'x' }, {}, 'DIFFID_ERR_MISSING_FILE', /"image" is missing/],
    [{ prompt: 'x' }, { image: new TextEncoder().encode('GIF89a not really') }, 'DIFFID_ERR_UNSUPPORTED_IMAGE', /not a JPEG, PNG or WebP/],
  ];
  for (const [fields, files, code, message] of cases) {
    const res = await post(fields, files);
    t.equal(res.body.code, code, `${JSON.stringify(fields).slice(0, 40)} → ${code}`);
    t.match(res.body.message, message);
    t.ok(res.status >= 400 && res.status < 500, 'a 4xx');
  }
});
