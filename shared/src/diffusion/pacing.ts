// How evenly a morph moves, and how to make it move evenly. DiffMorpher re-spaces its frames so
// that each step changes the picture equally; here the change between consecutive frames is their
// RMS pixel difference, the morph's path is the curve of cumulative change over α, and the
// re-spaced factors are where that curve reaches equal fractions of its length. Pure functions.

/** Root-mean-square difference of two RGB byte images of one size, in grey levels (0 … 255). */
export function frameDistance(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new RangeError(`frames differ in size (${a.length} vs ${b.length} bytes)`);
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] as number) - (b[i] as number);
    sum += d * d;
  }
  return a.length === 0 ? 0 : Math.sqrt(sum / a.length);
}

/** The distance between each frame and the next. */
export function consecutiveDistances(frames: Uint8Array[]): number[] {
  return frames.slice(1).map((f, i) => frameDistance(frames[i] as Uint8Array, f));
}

/**
 * Coefficient of variation, std / |mean| (population std): 0 when every value is equal.
 * Infinity when the mean is 0 and the values are not all 0; 0 for an empty list.
 */
export function coefficientOfVariation(values: number[]): number {
  if (values.length === 0) return 0;
  const mean = values.reduce((s, x) => s + x, 0) / values.length;
  const sd = Math.sqrt(values.reduce((s, x) => s + (x - mean) ** 2, 0) / values.length);
  if (mean === 0) return sd === 0 ? 0 : Infinity;
  return sd / Math.abs(mean);
}

/**
 * Factors at which the morph's cumulative change is evenly spaced. `alphas` are the increasing
 * factors a first pass rendered, `distances[i]` the change from frame i to frame i + 1; change
 * is taken as linear in α between rendered frames. Returns `count` factors from alphas[0] to the
 * last, the first and last kept. With no change at all, the factors are evenly spaced in α.
 */
export function evenAlphas(alphas: number[], distances: number[], count = alphas.length): number[] {
  if (alphas.length < 2 || distances.length !== alphas.length - 1) throw new RangeError('evenAlphas needs n ≥ 2 factors and n − 1 distances');
  if (count < 2) throw new RangeError('evenAlphas needs count ≥ 2');
  const first = alphas[0] as number;
  const last = alphas[alphas.length - 1] as number;
  const cumulative = [0];
  for (const d of distances) cumulative.push((cumulative.at(-1) as number) + Math.max(0, d));
  const total = cumulative.at(-1) as number;
  if (!(total > 0)) return Array.from({ length: count }, (_, k) => first + ((last - first) * k) / (count - 1));
  const out: number[] = [first];
  let segment = 0;
  for (let k = 1; k < count - 1; k++) {
    const target = (total * k) / (count - 1);
    while ((cumulative[segment + 1] as number) < target) segment++;
    const c0 = cumulative[segment] as number;
    const c1 = cumulative[segment + 1] as number;
    const a0 = alphas[segment] as number;
    const a1 = alphas[segment + 1] as number;
    out.push(a0 + ((a1 - a0) * (target - c0)) / (c1 - c0));
  }
  out.push(last);
  return out;
}
