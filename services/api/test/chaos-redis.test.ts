// At least once, under Redis faults: a private append-only Redis paused past the lock time and
// restarted. Every job that got a 202 ends succeeded with one set of results, no uploads left.
import t from 'tap';
import { account, haveRedis, lab, settle, sleep, submit, waitForWorkers } from './chaos-lab.ts';

// Worker processes start, get killed and recover: minutes on a loaded 2-core machine, not the default 2.
t.setTimeout(600_000);

t.test('Redis paused past the lock time, then restarted from its append-only file: no job lost or failed', { skip: !haveRedis && 'redis-server is not installed' }, async (t) => {
  const lockSeconds = 10;
  const l = await lab(t, { DIFFID_LOCK_SECONDS: String(lockSeconds), DIFFID_JOB_ATTEMPTS: '3' });
  l.spawnWorker();
  l.spawnWorker();
  await waitForWorkers(l, 2);
  const ids = await submit(l, 6);
  // A pause shorter than the lock costs nothing; one longer than the lock expires the running
  // jobs' locks: they run again elsewhere and their first runs stop at the next step.
  await sleep(1500);
  await l.pauseRedis(2_000);
  await sleep(1500);
  await l.pauseRedis((lockSeconds + 3) * 1000);
  await sleep(1500);
  // A restart: Redis shuts down (writing its AOF) and comes back on the same port and files.
  await l.stopRedis('SIGTERM');
  await sleep(1000);
  await l.startRedis();
  const views = await settle(l, ids);
  const { runs } = await account(t, l, ids, views);
  const lost = (l.log.join('').match(/job_lock_lost/g) ?? []).length;
  t.comment(`6 jobs, Redis paused 2 s and ${lockSeconds + 3} s (lock ${lockSeconds} s) and restarted: ${runs} runs, ${lost} runs stopped for a lost lock`);
});

