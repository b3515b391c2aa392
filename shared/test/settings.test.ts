import t from 'tap';
import { DEFAULT_SETTINGS, SETTINGS, SettingsError, readSettings } from '@diffid/shared/settings';

t.test('an empty environment gives every default, and unset equals empty', async (t) => {
  const s = readSettings({});
  t.equal(s.port, 8080);
  t.equal(s.maxBatch, 8);
  t.equal(s.executionProvider, 'cpu');
  t.equal(s.redisUrl, 'redis://127.0.0.1:6379');
  t.equal(s.modelDir, undefined);
  t.match(s.dataDir, /[/\\]var$/);
  t.same(readSettings({ PORT: '', DIFFID_MODEL_DIR: '' }), s);
  t.same(DEFAULT_SETTINGS, s);
  for (const [key, setting] of Object.entries(SETTINGS)) t.same((s as Record<string, unknown>)[key], setting.default, `${setting.env} defaults to ${String(setting.default)}`);
});

t.test('values are read and parsed by their variable names', async (t) => {
  const s = readSettings({ PORT: '9000', DIFFID_MAX_BATCH: '2', DIFFID_EXECUTION_PROVIDER: 'cuda', DIFFID_MODEL_DIR: '/models', LOG_LEVEL: 'debug', DIFFID_QUEUE: 'q', DIFFID_INFERENCE_HEAP_MB: '512' });
  t.equal(s.port, 9000);
  t.equal(s.inferenceHeapMb, 512);
  t.equal(s.maxBatch, 2);
  t.equal(s.executionProvider, 'cuda');
  t.equal(s.modelDir, '/models');
  t.equal(s.logLevel, 'debug');
  t.equal(s.queueName, 'q');
});

t.test('bad values are refused all at once, each naming its variable and what it must be', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: '70000' }, /PORT must be an integer in 0…65535, got "70000"/],
    [{ DIFFID_MAX_BATCH: '1.5' }, /DIFFID_MAX_BATCH must be an integer in 1…64/],
    [{ DIFFID_MAX_BATCH: '0x10' }, /DIFFID_MAX_BATCH must be an integer in 1…64, got "0x10"/],
    [{ DIFFID_BATCH_JOBS: '0' }, /DIFFID_BATCH_JOBS must be an integer in 1…64, got "0"/],
    [{ DIFFID_BATCH_JOBS: 'all' }, /DIFFID_BATCH_JOBS must be an integer in 1…64, got "all"/],
    [{ DIFFID_JOB_ATTEMPTS: '1e1' }, /DIFFID_JOB_ATTEMPTS must be an integer in 1…20/],
    [{ DIFFID_EXECUTION_PROVIDER: 'gpu' }, /DIFFID_EXECUTION_PROVIDER must be one of cpu, cuda, got "gpu"/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL must be one of fatal, error/],
    [{ DIFFID_RESULT_TTL_SECONDS: '5' }, /DIFFID_RESULT_TTL_SECONDS must be an integer in 60…/],
    [{ DIFFID_INFERENCE_HEAP_MB: '8' }, /DIFFID_INFERENCE_HEAP_MB must be an integer in 16…65536, got "8"/],
    [{ DIFFID_INFERENCE_HEAP_MB: '256MB' }, /DIFFID_INFERENCE_HEAP_MB must be an integer in 16…65536, got "256MB"/],
  ];
  for (const [env, message] of cases) t.throws(() => readSettings(env), message, JSON.stringify(env));
  try {
    readSettings({ PORT: 'x', DIFFID_MAX_BATCH: 'y' });
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof SettingsError);
    t.equal((err as SettingsError).problems.length, 2, 'both problems reported together');
  }
});
