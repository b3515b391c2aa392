// Morph pacing: frame distance, evenness, and re-spacing against values worked out by hand.
import t from 'tap';
import { coefficientOfVariation, consecutiveDistances, evenAlphas, frameDistance } from '@diffid/shared/diffusion';

t.test('frame distance is the RMS difference in grey levels', async (t) => {
  t.equal(frameDistance(Uint8Array.from([0, 0, 0, 0]), Uint8Array.from([3, 4, 0, 0])), Math.sqrt(25 / 4));
  t.equal(frameDistance(Uint8Array.from([9, 9]), Uint8Array.from([9, 9])), 0);
  t.throws(() => frameDistance(new Uint8Array(3), new Uint8Array(6)), /differ in size/);
  t.same(consecutiveDistances([Uint8Array.from([0]), Uint8Array.from([2]), Uint8Array.from([7])]), [2, 5]);
});

t.test('evenness is std over mean: 0 for equal steps', async (t) => {
  t.equal(coefficientOfVariation([2, 2, 2]), 0);
  t.equal(coefficientOfVariation([1, 3]), 0.5); // mean 2, std 1
  t.equal(coefficientOfVariation([0, 0]), 0);
  t.equal(coefficientOfVariation([-1, 1]), Infinity);
});

t.test('re-spaced factors sit at equal fractions of the cumulative change', async (t) => {
  // Change 3 then 1 over [0, ½, 1]: the cumulative curve 0, 3, 4; its midpoint 2 is at α = 1/3.
  t.same(evenAlphas([0, 0.5, 1], [3, 1]), [0, 1 / 3, 1]);
  // Already even: unchanged.
  t.same(evenAlphas([0, 0.25, 0.5, 0.75, 1], [1, 1, 1, 1]), [0, 0.25, 0.5, 0.75, 1]);
  // A jump in the middle (0.1, 8, 0.1): the inner factors crowd around it.
  const a = evenAlphas([0, 1 / 3, 2 / 3, 1], [0.1, 8, 0.1]);
  t.ok((a[1] as number) > 1 / 3 && (a[2] as number) < 2 / 3, `inner factors ${a.map((v) => v.toFixed(3)).join(', ')} move into the jump`);
  // No change at all: even in α; a different count is allowed.
  t.same(evenAlphas([0, 1], [0], 3), [0, 0.5, 1]);
  t.throws(() => evenAlphas([0, 1], [1, 2]), /n − 1 distances/);
});
