// A job command's options drawn from the served contract, as Cog draws its `-i name=value` from a
// model's schema: openapi.yaml is the one source of a form field's type, range, default and
// description, so a field added to a form schema there is a flag of the CLI with no change here.
// Each non-file property of the route's multipart schema becomes `--kebab-name` (booleans
// value-less, enums with choices, numbers checked as plain decimals within the schema's range),
// every field is also accepted as `-i name=value`, and the file properties become the positional
// arguments in schema order. Only what the user gave is collected: the server applies defaults.
import { type Command, Help, InvalidArgumentError, Option } from 'commander';
import { parse } from 'yaml';

/** A text field's value as the CLI sends it. */
export type FieldValue = string | number | boolean;

/** A non-file property of a form schema, as the CLI needs it. */
export interface FormField {
  /** The contract's name, e.g. `num_images`. */
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean';
  /** The enum's values, as text. */
  choices?: string[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  required: boolean;
  /** The description's first sentence. */
  help: string;
  /** The default in words (`1`, `"linear"`, `the model bundle's recommendation, else 30`). */
  defaultText?: string;
  /** The file field this one stands in for when given (`x-stands-in-for`: a stored identity for its photos). */
  standsInFor?: string;
}

/** A file property (format: binary, or an array of binaries): a positional argument. */
export interface FileField {
  name: string;
  /** An array of binaries: the field repeated, one file each. */
  many: boolean;
  minItems: number;
  maxItems?: number;
  required: boolean;
  help: string;
}

/** The multipart form of one job route. */
export interface JobForm {
  /** e.g. `POST /generate`. */
  route: string;
  files: FileField[];
  fields: FormField[];
}

/** Extra names for a contract field's flag (what users already type). */
export interface FieldAlias {
  /** One letter, e.g. `p` for `-p`. */
  short?: string;
  /** Long names without the dashes, e.g. `images` for `--images`. */
  long?: readonly string[];
}

export interface FormOptionsConfig {
  /** Extra flag names by contract field name. */
  aliases?: Readonly<Record<string, FieldAlias>>;
  /** The positional argument's name by file field name (`image` → `photos`); else the field's. */
  argumentNames?: Readonly<Record<string, string>>;
  /** The heading the contract's options are listed under in the help. */
  heading?: string;
}

/** What the user gave for a form. */
export interface FormInput {
  /** Text fields, only those given (by flag, alias or -i). */
  fields: Record<string, FieldValue>;
  /** File fields: the path, or the paths of a field that takes several. */
  files: Record<string, string | string[]>;
}

export interface FormOptions {
  form: JobForm;
  /** Reads the parsed command line: usage errors (missing, given twice, wrong count of files) exit through commander. */
  collect(): FormInput;
}

/** The contract is not what the CLI can read: not YAML, or without the route's form. */
export class ContractError extends Error {
  override readonly name = 'ContractError';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Parses an OpenAPI document's YAML text.
 *
 * @throws ContractError when it is not YAML or not a mapping.
 */
export function parseContract(text: string): Record<string, unknown> {
  let document: unknown;
  try {
    document = parse(text);
  } catch (err) {
    throw new ContractError(`openapi.yaml is not YAML (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`);
  }
  if (!isRecord(document)) throw new ContractError('openapi.yaml is not an OpenAPI document');
  return document;
}

/** Follows a node's local `$ref`s (JSON pointers into the document) to what they name. */
function deref(document: unknown, node: unknown, seen: ReadonlySet<string> = new Set()): unknown {
  if (!isRecord(node) || typeof node.$ref !== 'string') return node;
  const ref = node.$ref;
  if (!ref.startsWith('#/')) throw new ContractError(`openapi.yaml: only local $refs can be followed (${ref})`);
  if (seen.has(ref)) throw new ContractError(`openapi.yaml: $ref cycle at ${ref}`);
  let target: unknown = document;
  for (const part of ref.slice(2).split('/')) {
    const key = part.replaceAll('~1', '/').replaceAll('~0', '~');
    target = isRecord(target) ? target[key] : undefined;
  }
  if (target === undefined) throw new ContractError(`openapi.yaml: unresolved $ref ${ref}`);
  return deref(document, target, new Set([...seen, ref]));
}

/** The record at `path` under `node`, following $refs on the way; undefined where there is none. */
function recordAt(document: unknown, node: unknown, path: readonly string[]): Record<string, unknown> | undefined {
  let here = deref(document, node);
  for (const key of path) here = isRecord(here) ? deref(document, here[key]) : undefined;
  return isRecord(here) ? here : undefined;
}

const isBinary = (schema: unknown): boolean => isRecord(schema) && schema.type === 'string' && schema.format === 'binary';
const numberOr = (value: unknown): number | undefined => (typeof value === 'number' && Number.isFinite(value) ? value : undefined);

/**
 * Collapses a description to what a help line can hold: its first sentence (a full stop, not one
 * of e.g. or i.e., followed by a capital or code; else the first paragraph), without Markdown's
 * backticks.
 */
export function firstSentence(description: unknown): string {
  if (typeof description !== 'string') return '';
  const paragraph = (description.trim().split(/\n\s*\n/)[0] ?? '').replace(/\s+/g, ' ');
  const end = /(?<!\b(?:e\.g|i\.e|etc|cf|vs))[.!?](?=\s+[A-Z`])/.exec(paragraph);
  return (end ? paragraph.slice(0, end.index + 1) : paragraph).replaceAll('`', '');
}

/**
 * A field's default in words: `x-diffid-default` (`bundle`, `random`) where the contract has one,
 * its `default`, or the description's "Default — …" sentence (contracts before `x-diffid-default`).
 */
function defaultText(schema: Record<string, unknown>): string | undefined {
  const constant = schema.default === undefined ? undefined : JSON.stringify(schema.default);
  const kind = schema['x-diffid-default'];
  if (kind === 'bundle') return `the model bundle's recommendation${constant === undefined ? '' : `, else ${constant}`}`;
  if (kind === 'random') return 'random';
  if (constant !== undefined) return constant;
  if (typeof schema.description !== 'string') return undefined;
  const prose = /(?:^|\.\s+)Default\s*[—:-]\s*([^.]+(?:\.\d[^.]*)*)\./.exec(schema.description.replace(/\s+/g, ' '));
  return prose?.[1]?.trim().replaceAll('`', '');
}

function fieldType(schema: Record<string, unknown>): FormField['type'] {
  // OpenAPI 3.1 allows a list of types (`[integer, 'null']`): the first that is not null.
  const declared = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
  return declared === 'integer' || declared === 'number' || declared === 'boolean' ? declared : 'string';
}

function formField(name: string, schema: Record<string, unknown>, required: boolean): FormField {
  const field: FormField = { name, type: fieldType(schema), required, help: firstSentence(schema.description) };
  if (Array.isArray(schema.enum)) field.choices = schema.enum.filter((v) => v !== null).map(String);
  const minimum = numberOr(schema.minimum);
  const maximum = numberOr(schema.maximum);
  // OpenAPI 3.0 wrote an exclusive bound as a boolean beside minimum/maximum; 3.1 as the number.
  const exclusiveMinimum = schema.exclusiveMinimum === true ? minimum : numberOr(schema.exclusiveMinimum);
  const exclusiveMaximum = schema.exclusiveMaximum === true ? maximum : numberOr(schema.exclusiveMaximum);
  if (exclusiveMinimum !== undefined) field.exclusiveMinimum = exclusiveMinimum;
  else if (minimum !== undefined) field.minimum = minimum;
  if (exclusiveMaximum !== undefined) field.exclusiveMaximum = exclusiveMaximum;
  else if (maximum !== undefined) field.maximum = maximum;
  const dflt = defaultText(schema);
  if (dflt !== undefined) field.defaultText = dflt;
  if (typeof schema['x-stands-in-for'] === 'string') field.standsInFor = schema['x-stands-in-for'];
  return field;
}

/**
 * The multipart form of a job route: the `multipart/form-data` schema of `POST {route}`'s request
 * body (its local $refs followed), split into file fields and text fields, in schema order.
 *
 * @throws ContractError when the document has no such form.
 */
export function jobForm(document: unknown, route: string): JobForm {
  const label = `POST ${route}`;
  const schema = recordAt(document, document, ['paths', route, 'post', 'requestBody', 'content', 'multipart/form-data', 'schema']);
  const properties = schema ? recordAt(document, schema, ['properties']) : undefined;
  if (!schema || !properties) throw new ContractError(`openapi.yaml has no multipart form for ${label}`);
  const required = new Set(Array.isArray(schema.required) ? schema.required.filter((r) => typeof r === 'string') : []);
  const form: JobForm = { route: label, files: [], fields: [] };
  for (const [name, raw] of Object.entries(properties)) {
    const property = deref(document, raw);
    // A deprecated property is an alias the API still reads; the CLI offers its replacement only.
    if (!isRecord(property) || property.deprecated === true) continue;
    const items = deref(document, property.items);
    if (isBinary(property) || (property.type === 'array' && isBinary(items))) {
      const many = property.type === 'array';
      const minItems = many ? (numberOr(property.minItems) ?? 0) : 1;
      const file: FileField = { name, many, minItems, required: required.has(name), help: firstSentence(property.description) };
      const maxItems = numberOr(property.maxItems);
      if (many && maxItems !== undefined) file.maxItems = maxItems;
      form.files.push(file);
    } else {
      form.fields.push(formField(name, property, required.has(name)));
    }
  }
  return form;
}

// What the API takes as a number (services/api/src/forms.ts): decimal digits with an optional sign
// and fraction; no hex, exponents or Infinity. The CLI refuses the rest before sending.
const DECIMAL = /^[-+]?[0-9]{1,20}(?:\.[0-9]{1,20})?$|^[-+]?\.[0-9]{1,20}$/;
const INTEGER = /^[-+]?[0-9]{1,20}$/;

/** A field's range in words, e.g. `from 1 to 150`, `at least 0`. */
export function rangeText(field: FormField): string {
  if (field.minimum !== undefined && field.maximum !== undefined) return `from ${field.minimum} to ${field.maximum}`;
  const parts: string[] = [];
  if (field.minimum !== undefined) parts.push(`at least ${field.minimum}`);
  if (field.exclusiveMinimum !== undefined) parts.push(`greater than ${field.exclusiveMinimum}`);
  if (field.maximum !== undefined) parts.push(`at most ${field.maximum}`);
  if (field.exclusiveMaximum !== undefined) parts.push(`less than ${field.exclusiveMaximum}`);
  return parts.join(' and ');
}

function inRange(field: FormField, n: number): boolean {
  return (
    (field.minimum === undefined || n >= field.minimum) &&
    (field.maximum === undefined || n <= field.maximum) &&
    (field.exclusiveMinimum === undefined || n > field.exclusiveMinimum) &&
    (field.exclusiveMaximum === undefined || n < field.exclusiveMaximum)
  );
}

/**
 * A field's value from its command-line text, checked as the contract says: an enum's values,
 * true/false, or a plain decimal within the range.
 *
 * @param label How the message names the field (`--steps`, or `steps` for -i).
 * @throws InvalidArgumentError whose message says what the field takes.
 */
export function fieldValue(field: FormField, text: string, label: string = field.name): FieldValue {
  if (field.choices) {
    if (!field.choices.includes(text)) throw new InvalidArgumentError(`${label} must be one of ${field.choices.join(', ')}.`);
    return field.type === 'integer' || field.type === 'number' ? Number(text) : text;
  }
  switch (field.type) {
    case 'boolean':
      if (text === 'true' || text === 'false') return text === 'true';
      throw new InvalidArgumentError(`${label} must be true or false.`);
    case 'integer':
    case 'number': {
      const range = rangeText(field);
      const what = `${field.type === 'integer' ? 'an integer' : 'a decimal number'}${range ? ` ${range}` : ''}`;
      const trimmed = text.trim();
      const n = (field.type === 'integer' ? INTEGER : DECIMAL).test(trimmed) ? Number(trimmed) : NaN;
      if (!Number.isFinite(n) || (field.type === 'integer' && !Number.isSafeInteger(n)) || !inRange(field, n)) {
        throw new InvalidArgumentError(`${label} must be ${what}.`);
      }
      return n;
    }
    case 'string':
      return text;
  }
}

/** `num_images` → `num-images`, `faceIndex` → `face-index`. */
export function kebabCase(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .replace(/[_\s]+/g, '-')
    .toLowerCase();
}

const PLACEHOLDER: Record<FormField['type'], string> = { string: 'text', integer: 'n', number: 'x', boolean: '' };

/** The help line's extra information on a contract option: its range, aliases and default. */
const extraHelp = new WeakMap<Option, string[]>();

/**
 * Help that shows, after a contract option's description, its choices, range, aliases and the
 * contract's default in one parenthesis. The default is shown, not set: a value commander held as
 * a default would read as given, and the server applies defaults (some come from its bundle).
 */
function optionDescription(option: Option): string {
  const extra = extraHelp.get(option);
  if (!extra) return new Help().optionDescription(option);
  const info = [...(option.argChoices ? [`choices: ${option.argChoices.join(', ')}`] : []), ...extra];
  return info.length > 0 ? `${option.description}${option.description ? ' ' : ''}(${info.join('; ')})`.trim() : option.description;
}

/** Flags and attribute names already used by the command, its ancestors (global options) and help. */
function takenNames(cmd: Command): { flags: Set<string>; attributes: Set<string> } {
  const flags = new Set(['-h', '--help']);
  const attributes = new Set<string>();
  for (let c: Command | null = cmd; c; c = c.parent) {
    for (const o of c.options) {
      if (o.short) flags.add(o.short);
      if (o.long) flags.add(o.long);
      attributes.add(o.attributeName());
    }
  }
  return { flags, attributes };
}

/**
 * Adds a job form's fields to a command: a `--kebab-name` flag for each text field (with the
 * aliases given), `-i name=value` for any of them, and the file fields as positional arguments.
 * A field whose flag would clash with an option the command or its parents already have (say a
 * field `json`) is left to `-i`.
 *
 * @returns The form, and `collect()` to read what the user gave once commander has parsed.
 */
export function addFormOptions(cmd: Command, form: JobForm, config: FormOptionsConfig = {}): FormOptions {
  const heading = config.heading ?? `Fields of ${form.route} (each also as -i name=value):`;
  const taken = takenNames(cmd);
  const claim = (flag: string, attribute?: string): boolean => {
    if (taken.flags.has(flag) || (attribute !== undefined && taken.attributes.has(attribute))) return false;
    taken.flags.add(flag);
    if (attribute !== undefined) taken.attributes.add(attribute);
    return true;
  };
  const camel = (kebab: string) => kebab.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  const input = new Option('-i, --input <name=value>');
  claim('-i');
  claim('--input', 'input');

  /** Attribute name → the field it holds and how the user wrote it. */
  const flagged = new Map<string, { field: FormField; label: string; option: Option }>();
  const unflagged: string[] = [];
  const byName = new Map<string, FormField>();
  const parser = (field: FormField, label: string) => (text: string) => fieldValue(field, text, label);

  // The contract's own names first, so that a field always gets its flag before an alias of
  // another field (or a negation) can take that name.
  const primary: Array<{ field: FormField; long: string }> = [];
  for (const field of form.fields) {
    const long = kebabCase(field.name);
    byName.set(field.name, field);
    byName.set(long, field);
    if (claim(`--${long}`, camel(long))) primary.push({ field, long });
    else unflagged.push(field.name);
  }
  const aliasOptions: Option[] = [];
  for (const { field, long } of primary) {
    const alias = config.aliases?.[field.name] ?? {};
    const short = alias.short !== undefined && claim(`-${alias.short}`) ? `-${alias.short}, ` : '';
    const value = field.type === 'boolean' ? '' : ` <${field.choices ? 'choice' : PLACEHOLDER[field.type]}>`;
    const option = new Option(`${short}--${long}${value}`, field.help).helpGroup(heading);
    const extra: string[] = [];
    const range = rangeText(field);
    if (range && !field.choices) extra.push(range);
    if (field.choices) option.choices(field.choices);
    else if (field.type !== 'boolean') option.argParser(parser(field, `--${long}`));
    const aliases = (alias.long ?? []).filter((name) => claim(`--${name}`, camel(name)));
    if (aliases.length > 0) extra.push(`alias ${aliases.map((a) => `--${a}`).join(', ')}`);
    if (field.defaultText !== undefined) extra.push(`default: ${field.defaultText}`);
    if (field.required) extra.push('required');
    extraHelp.set(option, extra);
    cmd.addOption(option);
    flagged.set(option.attributeName(), { field, label: `--${long}`, option });
    // A boolean whose contract default is true needs a way to send false.
    if (field.type === 'boolean' && field.defaultText === 'true' && claim(`--no-${long}`)) {
      const negation = new Option(`--no-${long}`, `send ${field.name}=false`).helpGroup(heading);
      extraHelp.set(negation, []);
      cmd.addOption(negation);
    }
    // An alias has no help line of its own (its field's line names it), and is read as its field.
    for (const name of aliases) {
      const aliasOption = new Option(`--${name}${value}`).hideHelp();
      if (field.choices) aliasOption.choices(field.choices);
      else if (field.type !== 'boolean') aliasOption.argParser(parser(field, `--${name}`));
      aliasOptions.push(aliasOption);
      flagged.set(aliasOption.attributeName(), { field, label: `--${name}`, option });
    }
  }
  for (const o of aliasOptions) cmd.addOption(o);

  const example = form.fields.find((f) => f.required) ?? form.fields.find((f) => f.type !== 'string') ?? form.fields[0];
  input.description = `any field of ${form.route} by its contract name, e.g. -i ${example?.name ?? 'name'}=… (repeatable)${unflagged.length > 0 ? `; the only way to give ${unflagged.join(', ')}` : ''}`;
  // The -i values are kept here, checked and typed, as commander parses them; commander keeps the texts.
  const inputs: Array<{ field: FormField; value: FieldValue }> = [];
  input.helpGroup(heading).argParser((text: string, previous: string[] | undefined) => {
    const eq = text.indexOf('=');
    const name = eq < 0 ? text : text.slice(0, eq);
    const file = form.files.find((f) => f.name === name);
    if (file) throw new InvalidArgumentError(`${name} is a file: give it as the argument <${config.argumentNames?.[name] ?? name}>.`);
    const field = byName.get(name);
    if (!field) throw new InvalidArgumentError(`${form.route} has no field ${JSON.stringify(name)}; its fields are ${form.fields.map((f) => f.name).join(', ')}.`);
    if (eq < 0) throw new InvalidArgumentError(`write it as ${field.name}=value.`);
    inputs.push({ field, value: fieldValue(field, text.slice(eq + 1), field.name) });
    return [...(previous ?? []), text];
  });
  extraHelp.set(input, []);
  cmd.addOption(input);
  cmd.configureHelp({ ...cmd.configureHelp(), optionDescription });

  for (const [i, file] of form.files.entries()) {
    const name = config.argumentNames?.[file.name] ?? kebabCase(file.name);
    // Commander takes several values only for the last argument; an earlier list takes one file.
    const many = file.many && i === form.files.length - 1;
    const count = many ? ` (${file.maxItems === undefined ? `${file.minItems} or more` : `${file.minItems} to ${file.maxItems}`} files)` : '';
    cmd.argument(file.required ? `<${name}${many ? '...' : ''}>` : `[${name}${many ? '...' : ''}]`, `${file.help}${count}`);
  }

  return {
    form,
    collect(): FormInput {
      const given = new Map<string, { value: FieldValue; from: string }>();
      const give = (field: FormField, value: FieldValue, from: string) => {
        const prior = given.get(field.name);
        if (prior) cmd.error(`error: ${field.name} is given twice (${prior.from} and ${from})`, { exitCode: 2, code: 'diffid.givenTwice' });
        given.set(field.name, { value, from });
      };
      for (const [attribute, { field, label }] of flagged) {
        if (cmd.getOptionValueSource(attribute) !== 'cli') continue;
        const value: unknown = cmd.getOptionValue(attribute);
        // Choices come back as the text commander checked: give it its contract type.
        if (typeof value === 'string') give(field, fieldValue(field, value, label), label);
        else if (typeof value === 'number' || typeof value === 'boolean') give(field, value, label);
      }
      for (const { field, value } of inputs) give(field, value, `-i ${field.name}=…`);
      for (const field of form.fields) {
        if (!field.required || given.has(field.name)) continue;
        const option = [...flagged.values()].find((f) => f.field === field)?.option;
        cmd.error(`error: required option '${option ? option.flags : `-i ${field.name}=…`}' not specified`, { exitCode: 2, code: 'commander.missingMandatoryOptionValue' });
      }

      // The file arguments in order, each to the next file field that a given field (a stored
      // identity) does not stand in for: `morph --identity-a ID b.jpg` gives b.jpg as image_b.
      const replaced = new Set(form.fields.flatMap((f) => (f.standsInFor !== undefined && given.has(f.name) ? [f.standsInFor] : [])));
      const open = form.files.filter((f) => !replaced.has(f.name));
      const paths = (cmd.processedArgs as unknown[]).flatMap((a) => (Array.isArray(a) ? a.map(String) : typeof a === 'string' ? [a] : []));
      const files: Record<string, string | string[]> = {};
      for (const [i, file] of open.entries()) {
        const name = config.argumentNames?.[file.name] ?? kebabCase(file.name);
        const mine = file.many && i === open.length - 1 ? paths.splice(0) : paths.splice(0, 1);
        if (file.many && mine.length > 0 && (mine.length < file.minItems || (file.maxItems !== undefined && mine.length > file.maxItems))) {
          cmd.error(`error: <${name}...> takes ${file.maxItems === undefined ? `at least ${file.minItems}` : `${file.minItems} to ${file.maxItems}`} files (got ${mine.length})`, { exitCode: 2, code: 'diffid.fileCount' });
        }
        if (mine.length > 0) files[file.name] = file.many ? mine : (mine[0] as string);
      }
      if (paths.length > 0) cmd.error(`error: ${paths.length} file(s) more than the form takes (${paths.join(', ')})`, { exitCode: 2, code: 'diffid.fileCount' });
      return { fields: Object.fromEntries([...given].map(([name, { value }]) => [name, value])), files };
    },
  };
}
