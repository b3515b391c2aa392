// The job contract's types are generated from openapi.yaml (api-types.ts): they must be what
// openapi-typescript makes of the document now.
import { readFile } from 'node:fs/promises';
import t from 'tap';
import openapiTS, { astToString } from 'openapi-typescript';

t.test('shared/src/contract/api-types.ts is what openapi-typescript makes of openapi.yaml now', async (t) => {
  const fresh = astToString(await openapiTS(new URL('../../openapi.yaml', import.meta.url)));
  const committed = await readFile(new URL('../src/contract/api-types.ts', import.meta.url), 'utf8');
  const declarations = (text: string) => text.slice(text.indexOf('export interface paths'));
  t.equal(declarations(committed), declarations(fresh), 'run `npm run contract:types` after changing openapi.yaml');
});
