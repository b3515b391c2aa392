// Narrows the npm workspace to one service and `shared` before a production install, so that an
// image carries only that service's dependencies (the API image no onnxruntime-node, the worker
// image no Fastify). Run in a Docker build stage: node deploy/docker/only-workspace.mjs services/api
// then npm install --omit=dev, which keeps the lockfile's versions for every package that stays.
import { readFileSync, writeFileSync } from 'node:fs';

const service = process.argv[2];
const root = JSON.parse(readFileSync('package.json', 'utf8'));
if (!service || !root.workspaces.includes(service)) {
  process.stderr.write(`usage: only-workspace.mjs <one of ${root.workspaces.join(', ')}>\n`);
  process.exit(2);
}
root.workspaces = ['shared', service];
// The root's own dependencies are development tools (tsx, typescript, tap), and its scripts build.
delete root.dependencies;
delete root.devDependencies;
delete root.scripts;
writeFileSync('package.json', `${JSON.stringify(root, null, 2)}\n`);
const pkgPath = `${service}/package.json`;
const pkg = JSON.parse(readFileSync(pkgPath, 'utf8'));
delete pkg.devDependencies;
writeFileSync(pkgPath, `${JSON.stringify(pkg, null, 2)}\n`);
