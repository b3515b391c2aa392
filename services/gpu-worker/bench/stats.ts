// Order statistics for the benchmarks' repeated measurements.

/** The value at quantile q (0…1) of xs, by rank: the element at ⌊q·n⌋ of the sorted values. */
export function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] as number;
}

/** The median (the upper one for an even count). */
export const median = (xs: number[]): number => quantile(xs, 0.5);
