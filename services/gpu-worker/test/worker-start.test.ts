import t from 'tap';
import { redisScope } from '@diffid/shared/testing';
import { assertHandlersComplete, type HandlerTable } from '../src/handlers.ts';
import { startWorkerService } from '../src/worker-service.ts';
import { tinyBundleDir } from './helpers.ts';

const handler = async () => ({ images: [], timings_ms: { total: 0, inference: 0 } });

t.test('every job kind of the contract has a handler', async (t) => {
  t.doesNotThrow(() => assertHandlersComplete({ generate: handler, morph: handler, compare: handler }));
  t.throws(() => assertHandlersComplete({ generate: handler }), /no handler for job kind\(s\): morph, compare/);
  t.throws(() => assertHandlersComplete({ generate: handler, morph: handler, compare: 'no' }), /no handler for job kind\(s\): compare/);
});

t.test('the worker refuses to start with a handler missing', async (t) => {
  const scope = await redisScope('worker-start');
  t.teardown(() => scope.cleanup());
  const err = await startWorkerService({
    redis: scope.redis,
    prefix: scope.prefix,
    queueName: 'jobs',
    resultTtlSeconds: 60,
    modelDir: await tinyBundleDir(t),
    executionProvider: 'cpu',
    intraOpThreads: 0,
    maxBatch: 4,
    handlers: () => ({ generate: handler }) as unknown as HandlerTable,
  }).catch((e: unknown) => e as Error);
  t.match(err, { message: /no handler for job kind\(s\): morph/ });
});

t.test('a worker whose bundle cannot load fails to start with the loader\'s code', async (t) => {
  const scope = await redisScope('worker-start');
  t.teardown(() => scope.cleanup());
  const err = (await startWorkerService({
    redis: scope.redis,
    prefix: scope.prefix,
    queueName: 'jobs',
    resultTtlSeconds: 60,
    modelDir: '/nonexistent/bundle',
    executionProvider: 'cpu',
    intraOpThreads: 0,
    maxBatch: 4,
  }).catch((e: unknown) => e)) as { code?: string; message: string };
  t.equal(err.code, 'DIFFID_ERR_BUNDLE_FILE_MISSING');
  t.match(err.message, /no manifest.json in the bundle directory \/nonexistent\/bundle/);
});
