// The figures of a morphing-attack evaluation (docs/evaluation.md cites their definitions): the
// decision threshold τ at a false match rate, from bona fide impostor scores; MinMax-MMPMR,
// ProdAvg-MMPMR, RMMR and TMR at τ; the MAP matrix over attempts × recognizers; a DET curve.
// Pure functions over numbers. A score of null (no face found) never matches.

/** S(m, n, i) for one recognizer: per morph, per contributing subject, the scores of its probes in attempt order. */
export type MorphScores = Array<Array<Array<number | null>>>;

const above = (s: number | null, tau: number) => s !== null && s > tau;

/**
 * The threshold at false match rate `fmr` from impostor scores: the smallest τ among the scores
 * such that the share of impostor scores above τ is at most `fmr`. Null when there are fewer
 * than ⌈1/fmr⌉ scores, too few to resolve that rate.
 */
export function thresholdAtFmr(impostor: number[], fmr: number): number | null {
  if (!(fmr > 0 && fmr < 1)) throw new RangeError(`an FMR is in (0, 1), not ${fmr}`);
  if (impostor.length === 0 || impostor.length < Math.ceil(1 / fmr)) return null;
  const sorted = [...impostor].sort((a, b) => b - a);
  // k scores may lie above τ: the (k+1)-th highest is τ itself (not above it).
  const k = Math.floor(fmr * sorted.length);
  return sorted[Math.min(k, sorted.length - 1)] as number;
}

/** MinMax-MMPMR: the share of morphs for which every contributor is matched by at least one probe. */
export function mmpmr(scores: MorphScores, tau: number): number {
  if (scores.length === 0) return 0;
  return scores.filter((subjects) => subjects.every((probes) => probes.some((s) => above(s, tau)))).length / scores.length;
}

/** ProdAvg-MMPMR: per morph, the product over contributors of the share of their probes matched, averaged. */
export function prodAvgMmpmr(scores: MorphScores, tau: number): number {
  if (scores.length === 0) return 0;
  const per = scores.map((subjects) => subjects.reduce((p, probes) => p * (probes.length === 0 ? 0 : probes.filter((s) => above(s, tau)).length / probes.length), 1));
  return per.reduce((a, b) => a + b, 0) / scores.length;
}

/** TMR: the share of genuine (same-person) bona fide scores above τ; null without any. */
export function trueMatchRate(genuine: number[], tau: number): number | null {
  return genuine.length === 0 ? null : genuine.filter((s) => s > tau).length / genuine.length;
}

/** RMMR = 1 + (MMPMR − TMR); null without a TMR. */
export function rmmr(mmpmrValue: number, tmr: number | null): number | null {
  return tmr === null ? null : 1 + (mmpmrValue - tmr);
}

/**
 * The MAP matrix: MAP[r−1][c−1] is the share of morphs that, in at least r attempts, are
 * accepted for every contributor by at least c recognizers. Attempt i uses each contributor's
 * probe i; a contributor without an i-th probe is not accepted in attempt i. `byRecognizer[k]`
 * holds recognizer k's scores and `taus[k]` its threshold.
 */
export function mapMatrix(byRecognizer: MorphScores[], taus: number[]): number[][] {
  const C = byRecognizer.length;
  const morphs = byRecognizer[0]?.length ?? 0;
  const R = Math.max(0, ...byRecognizer.flatMap((m) => m.flatMap((subjects) => subjects.map((probes) => probes.length))));
  // For each morph and recognizer, the attempts in which every contributor was accepted.
  const accepted = Array.from({ length: morphs }, (_, m) =>
    byRecognizer.map((scores, k) => {
      const subjects = scores[m] ?? [];
      let n = 0;
      for (let i = 0; i < R; i++) if (subjects.length > 0 && subjects.every((probes) => above(probes[i] ?? null, taus[k] as number))) n++;
      return n;
    }),
  );
  return Array.from({ length: R }, (_, r) =>
    Array.from({ length: C }, (_, c) => (morphs === 0 ? 0 : accepted.filter((perRecognizer) => perRecognizer.filter((n) => n >= r + 1).length >= c + 1).length / morphs)),
  );
}

/**
 * The DET curve of bona fide scores: at every distinct score taken as τ, the false match rate
 * (impostors above τ) and false non-match rate (genuine at or below τ), from the lowest τ up.
 */
export function detCurve(genuine: number[], impostor: number[]): Array<{ tau: number; fmr: number; fnmr: number }> {
  if (genuine.length === 0 || impostor.length === 0) return [];
  const g = Float64Array.from(genuine).sort();
  const im = Float64Array.from(impostor).sort();
  const taus = [...new Set([...g, ...im])].sort((a, b) => a - b);
  return taus.map((tau) => ({ tau, fmr: (im.length - atMost(im, tau)) / im.length, fnmr: atMost(g, tau) / g.length }));
}

/** How many of the ascending `sorted` are ≤ x (a binary search). */
function atMost(sorted: Float64Array, x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as number) <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
