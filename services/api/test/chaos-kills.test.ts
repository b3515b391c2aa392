// At least once, under worker kills: worker processes SIGKILLed during jobs, twice in one job,
// and a job whose worker is lost on every attempt. Every job that got a 202 ends succeeded with
// one set of results, or — its attempts spent — failed as WORKER_LOST; no uploads are left.
import type { ChildProcess } from 'node:child_process';
import t from 'tap';
import { PREFIX, account, haveRedis, lab, ownerOf, processOf, settle, sleep, submit, waitForWorkers } from './chaos-lab.ts';

// Worker processes start, get killed and recover: minutes on a loaded 2-core machine.
t.setTimeout(600_000);

t.test('workers SIGKILLed during jobs, one job twice: every job succeeds once, within the attempts', { skip: !haveRedis && 'redis-server is not installed' }, async (t) => {
  const l = await lab(t, { DIFFID_LOCK_SECONDS: '60', DIFFID_JOB_ATTEMPTS: '3' });
  l.spawnWorker();
  l.spawnWorker();
  await waitForWorkers(l, 2);
  const ids = await submit(l, 6);
  const target = ids[0] as string;
  const recoveries: number[] = [];
  for (let kill = 0; kill < 2; kill++) {
    let owner = await ownerOf(l, target);
    for (let i = 0; i < 400 && !owner; i++) {
      await sleep(50);
      owner = await ownerOf(l, target);
    }
    const victim = owner && processOf(l, owner);
    t.ok(victim, `kill ${kill + 1}: the job's worker process is known`);
    if (!owner || !victim) break;
    await sleep(500); // mid-job
    victim.kill('SIGKILL');
    const killedAt = Date.now();
    l.spawnWorker();
    // Recovered once another worker has taken the job (a new owner). The wait ends there; its
    // bound (a stuck recovery fails the test rather than hang it) is generous, as a loaded
    // machine starts workers slowly.
    let recovered = false;
    for (let i = 0; i < 6000 && !recovered; i++) {
      const now = await ownerOf(l, target);
      recovered = now !== null && now.token !== owner.token;
      if (!recovered) await sleep(50);
    }
    t.ok(recovered, `kill ${kill + 1}: another worker took the job`);
    recoveries.push(Date.now() - killedAt);
  }
  const views = await settle(l, ids);
  const { runs } = await account(t, l, ids, views);
  t.comment(`6 jobs, 2 kills of the same job's worker: recovered after ${recoveries.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(' and ')}; ${runs} runs in all`);
});

t.test('a job whose worker is lost on every attempt fails for good as WORKER_LOST, and its uploads go', { skip: !haveRedis && 'redis-server is not installed' }, async (t) => {
  const l = await lab(t, { DIFFID_LOCK_SECONDS: '60', DIFFID_JOB_ATTEMPTS: '2' });
  l.spawnWorker();
  await waitForWorkers(l, 1);
  const [id] = (await submit(l, 1)) as [string];
  // Two attempts: the worker is killed during each; the third worker finds the job spent.
  const alive = (p: ChildProcess | undefined) => p !== undefined && p.exitCode === null && p.signalCode === null;
  for (let kill = 0; kill < 2; kill++) {
    let owner = await ownerOf(l, id);
    for (let i = 0; i < 600 && (!owner || !alive(processOf(l, owner))); i++) {
      await sleep(50);
      owner = await ownerOf(l, id);
    }
    const victim = owner && processOf(l, owner);
    t.ok(victim, `attempt ${kill + 1} runs on a known worker`);
    await sleep(500);
    victim?.kill('SIGKILL');
    l.spawnWorker();
    await waitForWorkers(l, kill + 2);
  }
  const [view] = (await settle(l, [id])) as [Record<string, any>];
  t.equal(view.status, 'failed', `failed (got ${JSON.stringify(view).slice(0, 300)})\n${l.log.join('').slice(-3000)}`);
  t.equal(view.error?.code, 'DIFFID_ERR_WORKER_LOST', `a clear code: ${view.error?.message}`);
  for (let i = 0; i < 40 && (await l.redis.keys(`${PREFIX}:job:*:input:*`)).length > 0; i++) await sleep(100);
  t.equal((await l.redis.keys(`${PREFIX}:job:*:input:*`)).length, 0, 'its uploads are deleted once it failed for good');
});
