// POST /generate, POST /morph, GET and DELETE /jobs/{id}, result images and the event stream.
import { randomInt } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { DEFAULTS, DiffIdError, LIMITS, type GenerateParams, type MorphParams } from '@diffid/shared';
import { isTerminal } from '../job-service.ts';
import { formReader, morphAlphas } from '../forms.ts';
import { componentSchema } from '../openapi.ts';

const errorSchema = componentSchema('Error');
const jobSchema = componentSchema('Job');
const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;
const readGenerate = formReader('GenerateForm');
const readMorph = formReader('MorphForm');
const seedOr = (v: unknown) => (typeof v === 'number' ? v : randomInt(0, LIMITS.maxSeed + 1));

function accepted(reply: FastifyReply, id: string) {
  return reply
    .code(202)
    .header('location', `/jobs/${id}`)
    .send({ id, status: 'queued', links: { self: `/jobs/${id}`, events: `/jobs/${id}/events` } });
}

const notFound = (id: string) => new DiffIdError('JOB_NOT_FOUND', `no job ${id}; it may have expired`);

export async function jobRoutes(app: FastifyInstance): Promise<void> {
  const acceptedResponses = {
    202: componentSchema('Accepted'),
    '4xx': errorSchema,
    '5xx': errorSchema,
  };

  app.post('/generate', { schema: { response: acceptedResponses } }, async (request, reply) => {
    const form = await readGenerate(request);
    const f = form.fields;
    const params: GenerateParams = {
      prompt: f.prompt as string,
      negative_prompt: (f.negative_prompt as string | undefined) ?? '',
      num_images: (f.num_images as number | undefined) ?? DEFAULTS.numImages,
      steps: (f.steps as number | undefined) ?? DEFAULTS.steps,
      guidance_scale: (f.guidance_scale as number | undefined) ?? DEFAULTS.guidanceScale,
      seed: seedOr(f.seed),
    };
    const id = await app.jobs.submit('generate', params, { image: form.files.image as Buffer });
    return accepted(reply, id);
  });

  app.post('/morph', { schema: { response: acceptedResponses } }, async (request, reply) => {
    const form = await readMorph(request);
    const f = form.fields;
    const params: MorphParams = {
      alphas: morphAlphas(f),
      interpolation: (f.interpolation as MorphParams['interpolation'] | undefined) ?? DEFAULTS.interpolation,
      prompt: (f.prompt as string | undefined) ?? '',
      steps: (f.steps as number | undefined) ?? DEFAULTS.morphSteps,
      seed: seedOr(f.seed),
    };
    const id = await app.jobs.submit('morph', params, { image_a: form.files.image_a as Buffer, image_b: form.files.image_b as Buffer });
    return accepted(reply, id);
  });

  app.get<{ Params: { id: string } }>('/jobs/:id', { schema: { params: idParams, response: { 200: jobSchema, '4xx': errorSchema, '5xx': errorSchema } } }, async (request) => {
    const view = await app.jobs.view(request.params.id);
    if (!view) throw notFound(request.params.id);
    return view;
  });

  app.delete<{ Params: { id: string } }>('/jobs/:id', { schema: { params: idParams, response: { 200: jobSchema, '4xx': errorSchema, '5xx': errorSchema } } }, async (request) =>
    app.jobs.cancel(request.params.id),
  );

  app.get<{ Params: { id: string; file: string } }>('/jobs/:id/images/:file', { schema: { response: { '4xx': errorSchema, '5xx': errorSchema } } }, async (request, reply) => {
    const { id, file } = request.params;
    const index = /^(0|[1-9][0-9]{0,3})\.png$/.exec(file)?.[1];
    const png = index === undefined ? null : await app.jobs.image(id, Number(index));
    if (!png) {
      if (!(await app.jobs.view(id))) throw notFound(id);
      throw new DiffIdError('IMAGE_NOT_FOUND', `job ${id} has no result image "${file}"; see result.images in GET /jobs/${id}`);
    }
    return reply.type('image/png').header('cache-control', 'private, max-age=3600, immutable').send(png);
  });

  app.get<{ Params: { id: string } }>('/jobs/:id/events', { schema: { params: idParams, response: { '4xx': errorSchema, '5xx': errorSchema } } }, async (request, reply) => {
    const { id } = request.params;
    if (!(await app.jobs.view(id))) throw notFound(id);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': diffid job events\n\n');
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    const finish = () => {
      clearInterval(heartbeat);
      unsubscribe();
      res.end();
    };
    let unsubscribe = () => {};
    try {
      unsubscribe = app.jobs.watch(id, (view) => {
        if (!view) return finish();
        res.write(`event: job\ndata: ${JSON.stringify(view)}\n\n`);
        if (isTerminal(view.status)) finish();
      });
    } catch (err) {
      request.log.error({ err }, 'cannot watch the job');
      finish();
    }
    request.raw.on('close', () => {
      clearInterval(heartbeat);
      unsubscribe();
    });
  });
}
