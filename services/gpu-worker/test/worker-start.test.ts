import t from 'tap';
import { redisScope } from '@diffid/shared/testing';
import { startWorkerService } from '../src/worker/service.ts';

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
