// Redis at its maxmemory (a private redis-server with a small one): submissions get 503
// STORAGE_FULL with Retry-After, not "Redis is not reachable", and readiness says the same; once
// room is made, both recover.
import t from 'tap';
import { haveRedis, lab } from './chaos-lab.ts';
import { faceFile } from './images.ts';

t.test('a full Redis is reported as full, by submissions and by readiness', { skip: !haveRedis && 'redis-server is not installed' }, async (t) => {
  const l = await lab(t, {}, ['--maxmemory', '16mb']);
  const face = await faceFile(1);
  const submit = () => {
    const fd = new FormData();
    fd.append('image', new Blob([face]), 'a.jpg');
    fd.append('prompt', 'x');
    return fetch(`${l.base}/generate`, { method: 'POST', body: fd });
  };
  t.equal((await submit()).status, 202, 'accepted while there is room');
  // Fill it: values of shrinking size, each until Redis refuses one, so that at the end even a
  // small write is refused (a large write's own buffer can be what tips Redis over).
  let fillers = 0;
  for (const size of [256 * 1024, 4096, 64]) {
    const value = Buffer.alloc(size, 1);
    for (let refused = false; !refused && fillers < 10_000; ) {
      await l.redis.set(`filler:${fillers}`, value).then(
        () => fillers++,
        (err: Error) => {
          if (!/^OOM/.test(err.message)) throw err;
          refused = true;
        },
      );
    }
  }
  t.ok(fillers > 0 && fillers < 10_000, `Redis is full after ${fillers} fillers`);

  const full = await submit();
  const body = (await full.json()) as { error: { code: string; message: string } };
  t.equal(full.status, 503);
  t.equal(body.error.code, 'DIFFID_ERR_STORAGE_FULL', 'its own code, not QUEUE_UNAVAILABLE');
  t.match(body.error.message, /full/);
  t.equal(full.headers.get('retry-after'), '30');
  const ready = await fetch(`${l.base}/readyz`);
  t.equal(ready.status, 503, 'not ready while full');
  t.equal(((await ready.json()) as { error: { code: string } }).error.code, 'DIFFID_ERR_STORAGE_FULL');

  for (let i = 0; i < fillers; i++) await l.redis.del(`filler:${i}`);
  t.equal((await fetch(`${l.base}/readyz`)).status, 200, 'ready again once there is room');
  t.equal((await submit()).status, 202, 'and accepting');
});
