// No import circles anywhere in the source, type-only imports included: a circle means two
// modules that cannot be read, tested or moved one without the other.
import { fileURLToPath } from 'node:url';
import madge from 'madge';
import t from 'tap';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SOURCES = ['shared/src', 'services/api/src', 'services/gpu-worker/src', 'client/src'];

t.test('the source has no import circles', async (t) => {
  const graph = await madge(SOURCES.map((dir) => `${ROOT}${dir}`), {
    baseDir: ROOT,
    fileExtensions: ['ts', 'mjs'],
    tsConfig: `${ROOT}tsconfig.json`,
    detectiveOptions: { ts: { skipTypeImports: false }, es6: { skipTypeImports: false } },
  });
  t.ok(Object.keys(graph.obj()).length > 80, `the graph holds the source files (${Object.keys(graph.obj()).length})`);
  t.same(graph.circular(), [], 'import circles (type-only included)');
});
