// The schema → commander mapping on a small contract of its own: flags named after the fields,
// choices, ranges checked as plain decimals, booleans, aliases, -i name=value, file arguments,
// and that only what the user gave is collected. Then on the project's openapi.yaml, and on a copy
// with a field added, which must turn up as a flag with no change to the CLI.
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { Command, CommanderError } from 'commander';
import { ContractError, addFormOptions, fieldValue, firstSentence, jobForm, kebabCase, parseContract, type FormInput } from '../src/contract-options.ts';
import { ARGUMENT_NAMES, FIELD_ALIASES } from '../src/cli.ts';

const CONTRACT = `
openapi: 3.1.0
paths:
  /things:
    post:
      requestBody:
        content:
          multipart/form-data:
            schema:
              $ref: '#/components/schemas/ThingForm'
components:
  schemas:
    Size:
      type: integer
      minimum: 1
      maximum: 4
      description: How big. Bigger takes longer.
    ThingForm:
      type: object
      required: [photos, prompt]
      properties:
        prompt:
          type: string
          description: |
            What to make, e.g. a cat. CLIP reads
            the first 77 tokens.
        num_images:
          type: integer
          minimum: 1
          maximum: 8
          default: 1
        guidance_scale:
          type: number
          minimum: 0
          maximum: 30
          default: 5
          x-diffid-default: bundle
          description: Classifier-free guidance.
        mode:
          type: string
          enum: [fast, slow]
          default: fast
          description: '\`fast\` or \`slow\`.'
        loop:
          type: boolean
          default: false
          description: Play it in a loop.
        keep:
          type: boolean
          default: true
          description: Keep the result.
        json:
          type: string
          description: A field whose flag the program already has.
        size:
          $ref: '#/components/schemas/Size'
        photos:
          type: array
          items: { type: string, format: binary }
          minItems: 1
          maxItems: 2
          description: The photos.
`;

interface Parsed {
  input?: FormInput;
  error?: string;
  exitCode?: number;
}

/** A program with a global --json and one command `things` built from the contract; parses `args`. */
async function parse(args: string[], text = CONTRACT): Promise<Parsed & { sub: Command; help: string }> {
  let errors = '';
  const root = new Command('p').option('--json').exitOverride().configureOutput({ writeErr: (s) => (errors += s), writeOut: () => undefined });
  const sub = root.command('things');
  const form = addFormOptions(sub, jobForm(parseContract(text), '/things'), { aliases: FIELD_ALIASES, argumentNames: { photos: 'pics' } });
  const out: Parsed = {};
  sub.action(() => {
    out.input = form.collect();
  });
  try {
    await root.parseAsync(['things', ...args], { from: 'user' });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    out.error = errors;
    out.exitCode = err.exitCode;
  }
  // Help lines wrap where the terminal's width says: compare them as one line.
  return { ...out, sub, help: sub.helpInformation().replace(/\s+/g, ' ') };
}

t.test('each non-file field is a --kebab-case flag, the files are the arguments', async (t) => {
  const { sub, help } = await parse(['a.png', '-p', 'x']);
  const flags = sub.options.filter((o) => !o.hidden).map((o) => o.flags);
  t.same(flags, ['-p, --prompt <text>', '-n, --num-images <n>', '--guidance-scale <x>', '--mode <choice>', '--loop', '--keep', '--no-keep', '--size <n>', '-i, --input <name=value>']);
  t.same(sub.options.filter((o) => o.hidden).map((o) => o.flags), ['--images <n>', '--guidance <x>'], 'the old names, hidden aliases');
  t.same(sub.options.find((o) => o.long === '--mode')?.argChoices, ['fast', 'slow'], 'an enum is commander choices');
  t.same(sub.registeredArguments.map((a) => [a.name(), a.required, a.variadic]), [['pics', true, true]]);
  t.notOk(sub.options.some((o) => o.long === '--json'), 'a field whose flag the program has is left to -i');
  for (const line of [
    '-p, --prompt <text> What to make, e.g. a cat. (required)',
    '-n, --num-images <n> (from 1 to 8; alias --images; default: 1)',
    "--guidance-scale <x> Classifier-free guidance. (from 0 to 30; alias --guidance; default: the model bundle's recommendation, else 5)",
    '--mode <choice> fast or slow. (choices: fast, slow; default: "fast")',
    '--loop Play it in a loop. (default: false)',
    '--no-keep send keep=false',
    '--size <n> How big. (from 1 to 4)',
    'the only way to give json',
    'pics The photos. (1 to 2 files)',
  ]) {
    t.ok(help.includes(line), line);
  }
  t.notOk(help.includes('--images <n> '), 'an alias has no line of its own');
});

t.test('only what the user gave is collected, typed as the contract says', async (t) => {
  const all = await parse(['a.png', 'b.png', '-p', 'hi', '--images', '2', '--guidance', '7.5', '--mode', 'slow', '--loop', '--no-keep', '-i', 'size=3', '-i', 'json=yes']);
  t.same(all.input, { fields: { prompt: 'hi', num_images: 2, guidance_scale: 7.5, mode: 'slow', loop: true, keep: false, size: 3, json: 'yes' }, files: { photos: ['a.png', 'b.png'] } });
  const least = await parse(['a.png', '--prompt', 'hi']);
  t.same(least.input, { fields: { prompt: 'hi' }, files: { photos: ['a.png'] } }, 'no defaults: the server applies them');
  const byInput = await parse(['a.png', '-i', 'prompt=a=b', '-i', 'num-images=4', '-i', 'loop=false', '--guidance-scale', '.5']);
  t.same(byInput.input?.fields, { prompt: 'a=b', num_images: 4, loop: false, guidance_scale: 0.5 }, '-i by the contract name (or its kebab form) satisfies a required field');
});

t.test('usage errors name the flag and what it takes', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['a.png', '-p', 'x', '--num-images', '9'], /option '-n, --num-images <n>' argument '9' is invalid\. --num-images must be an integer from 1 to 8\./],
    [['a.png', '-p', 'x', '--images', '1.5'], /--images must be an integer from 1 to 8/],
    [['a.png', '-p', 'x', '--guidance', '1e3'], /--guidance must be a decimal number from 0 to 30/],
    [['a.png', '-p', 'x', '--guidance-scale', '0x10'], /--guidance-scale must be a decimal number from 0 to 30/],
    [['a.png', '-p', 'x', '--mode', 'medium'], /argument 'medium' is invalid\. Allowed choices are fast, slow\./],
    [['a.png', '-p', 'x', '-i', 'size=0'], /option '-i, --input <name=value>' argument 'size=0' is invalid\. size must be an integer from 1 to 4\./],
    [['a.png', '-p', 'x', '-i', 'loop=yes'], /loop must be true or false/],
    [['a.png', '-p', 'x', '-i', 'nope=1'], /POST \/things has no field "nope"; its fields are prompt, num_images/],
    [['a.png', '-p', 'x', '-i', 'photos=b.png'], /photos is a file: give it as the argument <pics>/],
    [['a.png', '-p', 'x', '-i', 'size'], /write it as size=value/],
    [['a.png'], /required option '-p, --prompt <text>' not specified/],
    [['a.png', '-p', 'x', '-i', 'prompt=y'], /prompt is given twice \(--prompt and -i prompt=…\)/],
    [['a.png', '-p', 'x', '-n', '2', '--images', '3'], /num_images is given twice/],
    [['a.png', 'b.png', 'c.png', '-p', 'x'], /<pics\.\.\.> takes 1 to 2 files \(got 3\)/],
    [['-p', 'x'], /missing required argument 'pics'/],
  ];
  for (const [args, message] of cases) {
    const r = await parse(args);
    t.match(r.error, message, args.join(' '));
    t.ok(r.exitCode !== undefined && r.exitCode !== 0, 'a usage error');
    t.equal(r.input, undefined);
  }
});

t.test('plain decimals within the range, as the API reads them', async (t) => {
  const field = { name: 'x', type: 'number' as const, minimum: 0, maximum: 1, required: false, help: '' };
  t.equal(fieldValue(field, '0.25'), 0.25);
  t.equal(fieldValue(field, '+.5'), 0.5);
  t.equal(fieldValue(field, ' 1 '), 1);
  for (const bad of ['', '1e-1', 'Infinity', 'NaN', '0x1', '1.5', '-0.1', '1.', '..5']) t.throws(() => fieldValue(field, bad), /x must be a decimal number from 0 to 1/, JSON.stringify(bad));
  const exclusive = { name: 'y', type: 'integer' as const, exclusiveMinimum: 0, required: false, help: '' };
  t.throws(() => fieldValue(exclusive, '0'), /y must be an integer greater than 0/);
  t.equal(fieldValue(exclusive, '99999999'), 99999999);
  t.throws(() => fieldValue(exclusive, '99999999999999999999'), /an integer/, 'past what a double holds exactly');
});

t.test('names and descriptions', async (t) => {
  t.equal(kebabCase('num_images'), 'num-images');
  t.equal(kebabCase('faceIndexA'), 'face-index-a');
  t.equal(firstSentence('One morph factor (0 is A, 1 is B).'), 'One morph factor (0 is A, 1 is B).');
  t.equal(firstSentence('Comma-separated, e.g. 0,0.5,1. Checked once.'), 'Comma-separated, e.g. 0,0.5,1.');
  t.equal(firstSentence('`even` renders twice.\n`result.x` says so.'), 'even renders twice.');
  t.equal(firstSentence('First paragraph\nstill.\n\nSecond.'), 'First paragraph still.');
  t.equal(firstSentence(undefined), '');
});

t.test('a contract without the form is a ContractError', async (t) => {
  t.throws(() => jobForm(parseContract(CONTRACT), '/nothing'), ContractError);
  t.throws(() => parseContract('a: [1'), ContractError);
  t.throws(() => parseContract('just text'), ContractError);
  t.throws(() => jobForm(parseContract(CONTRACT.replace("'#/components/schemas/ThingForm'", "'#/components/schemas/Nope'")), '/things'), /unresolved \$ref/);
});

const OPENAPI = new URL('../../openapi.yaml', import.meta.url);

t.test("the project's openapi.yaml: the forms the CLI has always had", async (t) => {
  const document = parseContract(await readFile(OPENAPI, 'utf8'));
  const flagsOf = (route: string, name: string) => {
    const sub = new Command(name);
    addFormOptions(sub, jobForm(document, route), { aliases: FIELD_ALIASES, argumentNames: ARGUMENT_NAMES });
    return { sub, flags: sub.options.map((o) => o.flags) };
  };
  const generate = flagsOf('/generate', 'generate');
  t.same(generate.sub.registeredArguments.map((a) => a.name()), ['photos']);
  for (const flag of ['-p, --prompt <text>', '-n, --num-images <n>', '--images <n>', '--seed <n>', '--steps <n>', '--guidance-scale <x>', '--guidance <x>', '--negative-prompt <text>', '--negative <text>', '--on-missing-face <choice>', '--face-index <text>', '--identity-scale <x>', '--identity-start <x>', '--identity-end <x>']) {
    t.ok(generate.flags.includes(flag), `generate ${flag}`);
  }
  const morph = flagsOf('/morph', 'morph');
  t.same(morph.sub.registeredArguments.map((a) => a.name()), ['a', 'b']);
  for (const flag of ['--frames <n>', '--alphas <text>', '--alpha <x>', '--pacing <choice>', '--background <choice>', '--fps <n>', '--boomerang', '--strategy <choice>', '--structure-alpha <x>', '--identity-scale <x>', '--steps <n>', '--animation <text>']) {
    t.ok(morph.flags.includes(flag), `morph ${flag}`);
  }
  t.notOk(morph.flags.some((f) => f.includes('interpolation')), 'the deprecated alias is not offered');
  const compare = flagsOf('/compare', 'compare');
  t.same(compare.sub.registeredArguments.map((a) => a.name()), ['a', 'b']);
  t.ok(compare.flags.includes('--face-index-a <n>'));
});

t.test('a field added to the contract is a flag, with no change to the CLI', async (t) => {
  const text = (await readFile(OPENAPI, 'utf8')).replace(
    /(\n    GenerateForm:\n(?:.*\n)*?      properties:\n)/,
    '$1        sharpness:\n          type: number\n          minimum: 0\n          maximum: 2\n          default: 1\n          description: How sharp the images are. Only in this test.\n',
  );
  t.not(text, await readFile(OPENAPI, 'utf8'), 'the copy has the field');
  const sub = new Command('generate').exitOverride().configureOutput({ writeErr: () => undefined });
  const form = addFormOptions(sub, jobForm(parseContract(text), '/generate'), { aliases: FIELD_ALIASES, argumentNames: ARGUMENT_NAMES });
  t.ok(sub.helpInformation().replace(/\s+/g, ' ').includes('--sharpness <x> How sharp the images are. (from 0 to 2; default: 1)'));
  let input: FormInput | undefined;
  sub.action(() => {
    input = form.collect();
  });
  await sub.parseAsync(['a.jpg', '-p', 'x', '--sharpness', '0.5'], { from: 'user' });
  t.same(input, { fields: { prompt: 'x', sharpness: 0.5 }, files: { image: ['a.jpg'] } });
  await t.rejects(sub.parseAsync(['a.jpg', '-p', 'x', '--sharpness', '3'], { from: 'user' }), /--sharpness must be a decimal number from 0 to 2/);
});
