// npm run eval -- --morph-attack: how often recognizers accept a batch's morphs for both people.
// Every morph (a results.zip of POST /batches, or a folder with its manifest.csv) is scored against
// every probe photo of each contributor (PROBES/<subject name>/*) by each recognizer — the bundle's
// own and any linked one — with the same face crop the service uses (the bundle's detector, each
// recognizer's alignment). Thresholds come from the probes' own bona fide pairs at the FMR asked
// for when there are enough of them, else from --threshold; never from the morphs. It writes
// report.json, scores.csv, plots (PNG) and report.html into the output folder.
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { parse } from 'csv-parse/sync';
import yauzl from 'yauzl';
import type { FaceEmbedderEntry } from '@diffid/shared/bundle';
import { csvRow } from '@diffid/shared/csv';
import { cosineSimilarity } from '@diffid/shared/diffusion';
import { WORKING_MAX_SIDE, decodeRgb, encodeSvg, xmlText } from '@diffid/shared/image';
import type { LoadedBundle } from '../runtime/bundle-loader.ts';
import { openGraph, type Graph } from '../runtime/onnx.ts';
import { embedLargestFace, facePhotos } from './evaluate.ts';
import { detCurve, mapMatrix, mmpmr, prodAvgMmpmr, rmmr, thresholdAtFmr, trueMatchRate, type MorphScores } from './attack-metrics.ts';
import { detSvg, histogramSvg, mapSvg } from './attack-plots.ts';

/** A recognizer to score with: the bundle's own, or a linked graph with its entry. */
export interface AttackRecognizer {
  name: string;
  graph: Graph;
  entry: FaceEmbedderEntry;
}

export interface AttackOptions {
  /** A results.zip, or a folder holding manifest.csv and the files it names. */
  morphs: string;
  /** One folder per subject, named as the manifest names them, of photos. */
  probes: string;
  /** Linked recognizers besides the bundle's own (their files; entries as linkEmbedder made them; names, else the file's). */
  recognizers: Array<{ path: string; entry: FaceEmbedderEntry; name?: string }>;
  /** τ for a recognizer whose probes are too few to set one at `fmr`. */
  threshold?: number;
  fmr: number;
  out: string;
  log?: (line: string) => void;
}

export interface ScoreRow {
  morph: string;
  subject: string;
  probe: string;
  recognizer: string;
  /** Cosine similarity; null when no face was found in the morph or the probe. */
  score: number | null;
}

export interface RecognizerFigures {
  name: string;
  threshold: number;
  /** Where τ came from: the probes' impostor scores at `fmr`, or --threshold. */
  threshold_source: 'probes' | 'given';
  fmr: number | null;
  genuine_pairs: number;
  impostor_pairs: number;
  mmpmr: number;
  prodavg_mmpmr: number;
  rmmr: number | null;
  tmr: number | null;
}

export interface AttackReport {
  bundle: string;
  morphs: number;
  subjects: string[];
  /** Morphs left out, and why (a contributor without probes). */
  skipped: Array<{ morph: string; reason: string }>;
  recognizers: RecognizerFigures[];
  map: { attempts: number; recognizers: string[]; matrix: number[][] };
  scores: ScoreRow[];
  /** The probes' pairs that set τ and TMR: genuine (one subject) and impostor (two). */
  bona_fide: Array<{ probe_a: string; probe_b: string; recognizer: string; kind: 'genuine' | 'impostor'; score: number }>;
  files: string[];
}

/** How many bona fide pairs of each kind a DET curve needs to say anything. */
const DET_MIN_PAIRS = 10;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];

interface MorphEntry {
  file: string;
  subjects: [string, string];
}

/** The morphs of a batch's manifest: rows with a file and two contributors, named (or by identity id). */
function manifestMorphs(text: string): MorphEntry[] {
  const rows = parse(text, { columns: true, skip_empty_lines: true, bom: true }) as Array<Record<string, string>>;
  const subject = (name: string | undefined, id: string | undefined) => {
    // The manifest made names that look like formulas inert with an apostrophe; the folder has the name itself.
    const n = (name ?? '').replace(/^'(?=[=+\-@\t\r])/, '');
    return n || id || '';
  };
  return rows.flatMap((r) => {
    const a = subject(r.name_a, r.identity_a);
    const b = subject(r.name_b, r.identity_b);
    return r.file && a && b ? [{ file: r.file, subjects: [a, b] as [string, string] }] : [];
  });
}

/** Reads a results.zip or a folder: its morphs and a reader of their files. */
async function openMorphs(path: string): Promise<{ morphs: MorphEntry[]; read(file: string): Promise<Buffer>; close(): void }> {
  if ((await stat(path)).isDirectory()) {
    const manifest = await readFile(join(path, 'manifest.csv'), 'utf8').catch(() => {
      throw new Error(`${path} has no manifest.csv: give a batch's results.zip, or the folder it was unpacked into`);
    });
    const root = resolve(path);
    return {
      morphs: manifestMorphs(manifest),
      read: async (file) => {
        const full = resolve(root, file);
        if (relative(root, full).startsWith('..')) throw new Error(`the manifest names ${file}, outside ${path}`);
        return readFile(full);
      },
      close: () => undefined,
    };
  }
  const zip = await new Promise<yauzl.ZipFile>((ok, fail) => yauzl.open(path, { lazyEntries: true, autoClose: false }, (err, z) => (err || !z ? fail(err ?? new Error('no zip')) : ok(z))));
  const entries = new Map<string, yauzl.Entry>();
  await new Promise<void>((ok, fail) => {
    zip.on('entry', (e: yauzl.Entry) => {
      entries.set(e.fileName, e);
      zip.readEntry();
    });
    zip.once('end', ok);
    zip.once('error', fail);
    zip.readEntry();
  });
  const read = async (file: string) => {
    const entry = entries.get(file);
    if (!entry) throw new Error(`${path} has no ${file}`);
    const stream = await new Promise<Readable>((ok, fail) => zip.openReadStream(entry, (err, s) => (err || !s ? fail(err ?? new Error('no stream')) : ok(s))));
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };
  if (!entries.has('manifest.csv')) throw new Error(`${path} has no manifest.csv: is it a batch's results.zip?`);
  return { morphs: manifestMorphs((await read('manifest.csv')).toString('utf8')), read, close: () => zip.close() };
}

/** Probe photos per subject: PROBES/<subject>/*, by file name. */
async function readProbes(dir: string): Promise<Map<string, string[]>> {
  const probes = new Map<string, string[]>();
  for (const d of (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).sort((a, b) => a.name.localeCompare(b.name))) {
    const photos = await facePhotos(join(dir, d.name));
    if (photos.length > 0) probes.set(d.name, photos);
  }
  return probes;
}

/** Scores the morphs and writes the report; returns it. */
export async function morphAttack(bundle: LoadedBundle, o: AttackOptions): Promise<AttackReport> {
  const log = o.log ?? (() => {});
  const source = await openMorphs(o.morphs);
  const probes = await readProbes(o.probes);
  if (probes.size === 0) throw new Error(`${o.probes} has no subject folders of photos (PROBES/<subject name>/*.jpg)`);
  const skipped: AttackReport['skipped'] = [];
  const morphs = source.morphs.filter((m) => {
    const missing = m.subjects.filter((s) => !probes.has(s));
    if (missing.length > 0) skipped.push({ morph: m.file, reason: `no probes for ${missing.join(' and ')}` });
    return missing.length === 0;
  });
  if (morphs.length === 0) throw new Error(`none of the ${source.morphs.length} morphs has probes for both its contributors (subjects with probes: ${[...probes.keys()].join(', ')})`);

  const linked = await Promise.all(o.recognizers.map(async (r) => ({ name: r.name ?? basename(r.path), graph: await openGraph(r.path, { executionProvider: 'cpu' }), entry: r.entry })));
  const recognizers: AttackRecognizer[] = [{ name: `${bundle.manifest.name} (conditioning)`, graph: bundle.graphs.face_embedder, entry: bundle.manifest.models.face_embedder }, ...linked];
  try {
    const decode = async (bytes: Uint8Array, name: string) => decodeRgb(bytes, name, WORKING_MAX_SIDE);
    // Every probe's embedding under every recognizer, once.
    const probeList = [...probes.entries()].flatMap(([subject, files]) => files.map((file, attempt) => ({ subject, file, attempt })));
    const probeEmb = new Map<string, Array<Float32Array | null>>();
    for (const p of probeList) {
      const image = await decode(new Uint8Array(await readFile(p.file)), basename(p.file));
      probeEmb.set(p.file, await Promise.all(recognizers.map((r) => embedLargestFace(bundle, r.graph, r.entry, image))));
    }
    const sim = (a: Float32Array | null | undefined, b: Float32Array | null | undefined) => (a && b ? cosineSimilarity(a, b) : null);
    // Bona fide pairs among the probes: genuine (one subject) and impostor (two).
    const genuine = recognizers.map(() => [] as number[]);
    const impostor = recognizers.map(() => [] as number[]);
    const bonaFide: AttackReport['bona_fide'] = [];
    for (let i = 0; i < probeList.length; i++) {
      for (let j = i + 1; j < probeList.length; j++) {
        const [p, q] = [probeList[i], probeList[j]] as [(typeof probeList)[number], (typeof probeList)[number]];
        recognizers.forEach((r, k) => {
          const score = sim(probeEmb.get(p.file)?.[k], probeEmb.get(q.file)?.[k]);
          if (score === null) return;
          const kind = p.subject === q.subject ? 'genuine' : 'impostor';
          (kind === 'genuine' ? genuine : impostor)[k]?.push(score);
          bonaFide.push({ probe_a: relative(o.probes, p.file), probe_b: relative(o.probes, q.file), recognizer: r.name, kind, score });
        });
      }
    }

    const scores: ScoreRow[] = [];
    const byRecognizer: MorphScores[] = recognizers.map(() => []);
    for (const [n, m] of morphs.entries()) {
      if (n % 50 === 0) log(`morph ${n + 1} of ${morphs.length}`);
      const image = await decode(new Uint8Array(await source.read(m.file)), m.file);
      const emb = await Promise.all(recognizers.map((r) => embedLargestFace(bundle, r.graph, r.entry, image)));
      recognizers.forEach((r, k) => {
        byRecognizer[k]?.push(
          m.subjects.map((subject) =>
            (probes.get(subject) ?? []).map((file) => {
              const score = sim(emb[k], probeEmb.get(file)?.[k]);
              scores.push({ morph: m.file, subject, probe: relative(o.probes, file), recognizer: r.name, score });
              return score;
            }),
          ),
        );
      });
    }

    const figures: RecognizerFigures[] = recognizers.map((r, k) => {
      const fromProbes = thresholdAtFmr(impostor[k] ?? [], o.fmr);
      if (fromProbes === null && o.threshold === undefined) {
        throw new Error(
          `${r.name}: the probes give ${impostor[k]?.length ?? 0} impostor pairs, and an FMR of ${o.fmr} needs at least ${Math.ceil(1 / o.fmr)} to set τ; add probes (more subjects, more photos each) or give --threshold`,
        );
      }
      const tau = fromProbes ?? (o.threshold as number);
      const rate = mmpmr(byRecognizer[k] ?? [], tau);
      const tmr = trueMatchRate(genuine[k] ?? [], tau);
      return {
        name: r.name,
        threshold: tau,
        threshold_source: fromProbes === null ? 'given' : 'probes',
        fmr: fromProbes === null ? null : o.fmr,
        genuine_pairs: genuine[k]?.length ?? 0,
        impostor_pairs: impostor[k]?.length ?? 0,
        mmpmr: rate,
        prodavg_mmpmr: prodAvgMmpmr(byRecognizer[k] ?? [], tau),
        rmmr: rmmr(rate, tmr),
        tmr,
      };
    });
    const matrix = mapMatrix(byRecognizer, figures.map((f) => f.threshold));
    const report: AttackReport = {
      bundle: bundle.manifest.name,
      morphs: morphs.length,
      subjects: [...probes.keys()],
      skipped,
      recognizers: figures,
      map: { attempts: matrix.length, recognizers: figures.map((f) => f.name), matrix },
      scores,
      bona_fide: bonaFide,
      files: [],
    };

    await mkdir(o.out, { recursive: true });
    const write = async (name: string, data: string | Buffer) => {
      await writeFile(join(o.out, name), data);
      report.files.push(name);
    };
    await write('scores.csv', [csvRow(['morph', 'subject', 'probe', 'recognizer', 'score']), ...scores.map((s) => csvRow([s.morph, s.subject, s.probe, s.recognizer, s.score]))].join(''));
    const panels = figures.map((f, k) => ({
      recognizer: f.name,
      tau: f.threshold,
      series: [
        { label: 'morph vs contributor', color: '#d62728', scores: scores.filter((s) => s.recognizer === f.name && s.score !== null).map((s) => s.score as number) },
        { label: 'impostor pairs', color: '#1f77b4', scores: impostor[k] ?? [] },
        { label: 'genuine pairs', color: '#2ca02c', scores: genuine[k] ?? [] },
      ],
    }));
    await write('histograms.png', await encodeSvg(histogramSvg(panels)));
    await write('map.png', await encodeSvg(mapSvg(matrix, figures.map((f) => f.name))));
    const det = figures.flatMap((f, k) => ((genuine[k]?.length ?? 0) >= DET_MIN_PAIRS && (impostor[k]?.length ?? 0) >= DET_MIN_PAIRS ? [{ recognizer: f.name, color: COLORS[k % COLORS.length] as string, points: detCurve(genuine[k] ?? [], impostor[k] ?? []) }] : []));
    if (det.length > 0) await write('det.png', await encodeSvg(detSvg(det)));
    else log(`no DET curve: it needs ${DET_MIN_PAIRS} genuine and ${DET_MIN_PAIRS} impostor pairs among the probes`);
    await write('report.html', reportHtml(report));
    report.files.push('report.json');
    await writeFile(join(o.out, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    return report;
  } finally {
    source.close();
    await Promise.all(linked.map((r) => r.graph.release()));
  }
}

/** The report as a small page: the figures per recognizer, the MAP matrix, the plots. */
function reportHtml(r: AttackReport): string {
  const f = (v: number | null, d = 3) => (v === null ? '—' : v.toFixed(d));
  const rows = r.recognizers.map((x) => `<tr><td>${xmlText(x.name)}</td><td>${f(x.threshold)}</td><td>${x.threshold_source === 'probes' ? `probes, FMR ${x.fmr}` : '--threshold'}</td><td>${x.genuine_pairs} / ${x.impostor_pairs}</td><td>${f(x.mmpmr)}</td><td>${f(x.prodavg_mmpmr)}</td><td>${f(x.rmmr)}</td><td>${f(x.tmr)}</td></tr>`);
  const map = r.map.matrix.map((row, i) => `<tr><th>r ≥ ${i + 1}</th>${row.map((v) => `<td>${f(v, 2)}</td>`).join('')}</tr>`);
  const plots = r.files.filter((p) => p.endsWith('.png')).map((p) => `<figure><img src="${p}" alt="${p}"><figcaption>${p}</figcaption></figure>`);
  return `<!doctype html><html lang="en"><meta charset="utf-8"><title>Morphing-attack report</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}td:first-child{text-align:left}img{max-width:100%}</style>
<h1>Morphing-attack report</h1>
<p>${r.morphs} morphs of bundle ${xmlText(r.bundle)}, ${r.subjects.length} subjects with probes${r.skipped.length ? `, ${r.skipped.length} morphs left out (no probes)` : ''}. Scores: scores.csv; every figure: report.json.</p>
<table><tr><th>recognizer</th><th>τ</th><th>τ from</th><th>genuine / impostor pairs</th><th>MMPMR</th><th>ProdAvg-MMPMR</th><th>RMMR</th><th>TMR</th></tr>${rows.join('')}</table>
<h2>MAP (attempts × recognizers)</h2>
<table><tr><th></th>${r.map.recognizers.map((_, c) => `<th>c ≥ ${c + 1}</th>`).join('')}</tr>${map.join('')}</table>
${plots.join('\n')}
</html>
`;
}
