// The stage clock reports wall time: overlapping runs of one stage count once.
import t from 'tap';
import { stageClock } from '../src/stages/context.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('concurrent runs of a stage count their union, not their sum', async (t) => {
  const clock = stageClock();
  const started = performance.now();
  await Promise.all([0, 1, 2, 3].map(() => clock.time('score', () => sleep(50))));
  const wall = performance.now() - started;
  await clock.time('decode', () => sleep(20));
  const totals = clock.totals();
  t.ok((totals.score as number) <= wall, `4 overlapping 50 ms runs: ${totals.score?.toFixed(1)} ms, no more than the ${wall.toFixed(1)} ms they took together`);
  t.ok((totals.score as number) >= 45, 'and at least one run long');
  t.same(Object.keys(totals), ['score', 'decode']);
  const failing = clock.time('embed', async () => {
    throw new Error('boom');
  });
  await t.rejects(failing, /boom/);
  t.ok('embed' in clock.totals(), 'a stage that throws is still timed');
});
