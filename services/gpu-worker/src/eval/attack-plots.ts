// The plots of a morphing-attack report as SVG (encodeSvg makes them PNGs): score histograms with
// τ marked, one panel per recognizer; the MAP matrix as a heat map; a DET curve of bona fide
// scores on log axes.
import { xmlText } from '@diffid/shared/image';

const FONT = 'font-family="DejaVu Sans, sans-serif"';
const text = (x: number, y: number, s: string, o: { size?: number; anchor?: 'start' | 'middle' | 'end'; fill?: string; rotate?: boolean } = {}) =>
  `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${FONT} font-size="${o.size ?? 12}" fill="${o.fill ?? '#111'}" text-anchor="${o.anchor ?? 'start'}"${o.rotate ? ` transform="rotate(-90 ${x.toFixed(1)} ${y.toFixed(1)})"` : ''}>${xmlText(s)}</text>`;
const svg = (w: number, h: number, body: string[]) => `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"><rect width="${w}" height="${h}" fill="#fff"/>${body.join('')}</svg>`;

/** One recognizer's scores for the histogram panel. */
export interface HistogramPanel {
  recognizer: string;
  tau: number;
  series: Array<{ label: string; color: string; scores: number[] }>;
}

/** Score histograms, a panel per recognizer: each series as bars of its share per bin, τ as a red line. */
export function histogramSvg(panels: HistogramPanel[]): string {
  const W = 620;
  const H = 240;
  const m = { left: 50, right: 16, top: 34, bottom: 40 };
  const bins = 40;
  const body: string[] = [];
  panels.forEach((p, k) => {
    const top = k * H;
    const all = p.series.flatMap((s) => s.scores).concat(p.tau);
    const lo = Math.min(-1, ...all);
    const hi = Math.max(1, ...all);
    const x = (v: number) => m.left + ((v - lo) / (hi - lo)) * (W - m.left - m.right);
    const plotH = H - m.top - m.bottom;
    const shares = p.series.map((s) => {
      const counts = new Array<number>(bins).fill(0);
      for (const v of s.scores) counts[Math.min(bins - 1, Math.floor(((v - lo) / (hi - lo)) * bins))]! += 1;
      return counts.map((c) => (s.scores.length ? c / s.scores.length : 0));
    });
    const peak = Math.max(0.01, ...shares.flat());
    const y = (share: number) => top + m.top + plotH * (1 - share / peak);
    body.push(text(m.left, top + 20, `${p.recognizer}: τ = ${p.tau.toFixed(3)}`, { size: 14 }));
    const bw = (W - m.left - m.right) / bins;
    shares.forEach((counts, j) => {
      const s = p.series[j] as HistogramPanel['series'][number];
      counts.forEach((share, b) => {
        if (share > 0) body.push(`<rect x="${(m.left + b * bw).toFixed(1)}" y="${y(share).toFixed(1)}" width="${bw.toFixed(1)}" height="${(top + m.top + plotH - y(share)).toFixed(1)}" fill="${s.color}" fill-opacity="0.45"/>`);
      });
      body.push(`<rect x="${W - 170}" y="${top + m.top + j * 16}" width="10" height="10" fill="${s.color}" fill-opacity="0.6"/>`, text(W - 155, top + m.top + 9 + j * 16, `${s.label} (${s.scores.length})`, { size: 11 }));
    });
    body.push(`<line x1="${x(p.tau).toFixed(1)}" x2="${x(p.tau).toFixed(1)}" y1="${top + m.top}" y2="${top + m.top + plotH}" stroke="#d00" stroke-width="2"/>`);
    body.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${top + m.top + plotH}" y2="${top + m.top + plotH}" stroke="#333"/>`);
    for (let t = Math.ceil(lo * 4) / 4; t <= hi + 1e-9; t += 0.25) body.push(text(x(t), top + m.top + plotH + 16, t.toFixed(2), { size: 10, anchor: 'middle' }));
    body.push(text(W / 2, top + H - 6, 'cosine similarity', { size: 11, anchor: 'middle' }), text(14, top + m.top + plotH / 2, 'share', { size: 11, anchor: 'middle', rotate: true }));
  });
  return svg(W, H * panels.length, body);
}

/** The MAP matrix as a heat map: rows attempts r, columns recognizers c, each cell its share. */
export function mapSvg(map: number[][], recognizers: string[]): string {
  const cell = 70;
  const m = { left: 110, top: 60 };
  const rows = map.length;
  const cols = recognizers.length;
  const W = m.left + cols * cell + 20;
  const H = m.top + rows * cell + 30;
  const body: string[] = [text(10, 22, 'MAP: share of morphs accepted in ≥ r attempts by ≥ c recognizers', { size: 13 })];
  for (let c = 0; c < cols; c++) body.push(text(m.left + c * cell + cell / 2, m.top - 8, `c ≥ ${c + 1}`, { size: 12, anchor: 'middle' }));
  map.forEach((row, r) => {
    body.push(text(m.left - 10, m.top + r * cell + cell / 2 + 4, `r ≥ ${r + 1}`, { size: 12, anchor: 'end' }));
    row.forEach((v, c) => {
      // White (0) to dark red (1).
      const shade = Math.round(255 * (1 - v));
      body.push(`<rect x="${m.left + c * cell}" y="${m.top + r * cell}" width="${cell - 2}" height="${cell - 2}" fill="rgb(200,${shade},${shade})"/>`);
      body.push(text(m.left + c * cell + cell / 2, m.top + r * cell + cell / 2 + 5, v.toFixed(2), { size: 14, anchor: 'middle', fill: v > 0.6 ? '#fff' : '#111' }));
    });
  });
  body.push(text(m.left, H - 8, recognizers.map((n, i) => `${i + 1}: ${n}`).join('   '), { size: 10 }));
  return svg(W, H, body);
}

/** DET curves, one per recognizer: FNMR against FMR, both on log axes from 10⁻⁴ to 1. */
export function detSvg(curves: Array<{ recognizer: string; color: string; points: Array<{ fmr: number; fnmr: number }> }>): string {
  const W = 520;
  const H = 460;
  const m = { left: 64, right: 20, top: 30, bottom: 50 };
  const floor = 1e-4;
  const axis = (v: number, size: number) => ((Math.log10(Math.max(floor, v)) - Math.log10(floor)) / -Math.log10(floor)) * size;
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const x = (fmr: number) => m.left + axis(fmr, pw);
  const y = (fnmr: number) => m.top + ph - axis(fnmr, ph);
  const body: string[] = [text(m.left, 20, 'DET of bona fide pairs (log axes)', { size: 13 })];
  for (const d of [1e-4, 1e-3, 1e-2, 1e-1, 1]) {
    body.push(`<line x1="${x(d)}" x2="${x(d)}" y1="${m.top}" y2="${m.top + ph}" stroke="#ddd"/>`, `<line x1="${m.left}" x2="${m.left + pw}" y1="${y(d)}" y2="${y(d)}" stroke="#ddd"/>`);
    body.push(text(x(d), m.top + ph + 16, String(d), { size: 10, anchor: 'middle' }), text(m.left - 6, y(d) + 4, String(d), { size: 10, anchor: 'end' }));
  }
  curves.forEach((c, k) => {
    const pts = c.points.map((p) => `${x(p.fmr).toFixed(1)},${y(p.fnmr).toFixed(1)}`).join(' ');
    body.push(`<polyline points="${pts}" fill="none" stroke="${c.color}" stroke-width="2"/>`, text(W - 200, m.top + 14 + k * 16, c.recognizer, { size: 11, fill: c.color }));
  });
  body.push(text(m.left + pw / 2, H - 10, 'FMR (impostors above τ)', { size: 11, anchor: 'middle' }), text(16, m.top + ph / 2, 'FNMR (genuine at or below τ)', { size: 11, anchor: 'middle', rotate: true }));
  return svg(W, H, body);
}
