import t from 'tap';
import { intFromEnv } from '../src/index.ts';

t.test('integer settings: fallback when unset, checked bounds, the variable named on error', async (t) => {
  t.equal(intFromEnv({}, 'PORT', 8080, 0, 65535), 8080);
  t.equal(intFromEnv({ PORT: '' }, 'PORT', 8080, 0, 65535), 8080);
  t.equal(intFromEnv({ PORT: '9000' }, 'PORT', 8080, 0, 65535), 9000);
  t.throws(() => intFromEnv({ PORT: '70000' }, 'PORT', 8080, 0, 65535), /PORT must be an integer in 0…65535, got "70000"/);
  t.throws(() => intFromEnv({ DIFFID_MAX_BATCH: '1.5' }, 'DIFFID_MAX_BATCH', 8, 1), /DIFFID_MAX_BATCH must be an integer/);
  t.throws(() => intFromEnv({ DIFFID_MAX_BATCH: 'many' }, 'DIFFID_MAX_BATCH', 8, 1), /got "many"/);
});
