// The playground's form fields, drawn from openapi.yaml's multipart schemas (GenerateForm,
// MorphForm, CompareForm) the way Cog and Replicate draw a model's web form from its schema: a
// field added to the contract appears on the page with no page change. Pure functions of a schema;
// playground-plugin.ts renders the page once at start, so the form is whole before anyone has
// given the page an API key.
//
// The rules, in one place:
// - `x-playground: hidden` leaves a property out (webhooks: a browser has no URL to be called on);
//   `x-playground: advanced` puts it under "More options". Everything else is up front, and so
//   is every required property (the browser must be able to point at an empty one).
// - A binary, or an array of binaries, is a drop zone (`multiple` for the array).
// - enum → <select>; boolean with a default → checkbox; integer/number → number input with
//   min/max/step, or a slider showing its value when `x-playground-input: slider` (it needs a
//   minimum, a maximum and a constant default); anything else → text input with maxlength.
// - A field that stands in for a file (`x-stands-in-for`: a stored identity) offers the key's
//   stored identities to pick, from the page's one <datalist id="stored-identities">.
// - A constant `default` is the input's starting value. A property without one — or whose default
//   the API settles per job (`x-diffid-default`: the bundle's recommendation, a random seed) —
//   starts empty, so the server applies its own, and says what will happen in a placeholder.
// - `title` is the label (else the name), `description` the tooltip.

/** One property of a form schema: the keywords the page reads, and any others it does not. */
export interface PropertySchema {
  [keyword: string]: unknown;
  type?: string | string[];
  format?: string;
  items?: PropertySchema;
  enum?: unknown[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  maxLength?: number;
  maxItems?: number;
  title?: string;
  description?: string;
  'x-playground'?: string;
  'x-playground-input'?: string;
  'x-stands-in-for'?: string;
  'x-diffid-default'?: string;
}

/** A multipart form's schema ($refs resolved). */
export interface FormSchema {
  properties: Record<string, PropertySchema>;
  required?: string[];
}

export interface RenderOptions {
  /** The inputs' ids are `${prefix}-${property}` (the page's script and tests find them so). */
  prefix: string;
  /** Media types each file property takes (its multipart encoding's contentType), for `accept`. */
  accept?: Record<string, string>;
  /** Starting values for properties the contract gives no default. */
  start?: Record<string, string | number | boolean>;
}

/** A form's markup in two parts: the drop zones, and the other fields (with "More options"). */
export interface RenderedForm {
  files: string;
  fields: string;
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe for HTML content and for double-quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ENTITIES[c] ?? c);
}

type AttrValue = string | number | boolean | undefined;

/** ` name="value"` for each set attribute, escaped; `true` writes a bare attribute. */
function attrs(values: Record<string, AttrValue>): string {
  let out = '';
  for (const [name, value] of Object.entries(values)) {
    if (value === undefined || value === false) continue;
    out += value === true ? ` ${name}` : ` ${name}="${escapeHtml(value)}"`;
  }
  return out;
}

const PLACEMENTS = new Set(['advanced', 'hidden']);

/** What the API does with an `x-diffid-default` property left empty, in a placeholder's words. */
const SETTLED_DEFAULTS: Record<string, string> = { bundle: 'bundle default', random: 'random' };

const typeOf = (p: PropertySchema): string | undefined => (Array.isArray(p.type) ? p.type.find((t) => t !== 'null') : p.type);

/** Whether a property is a file upload (as formSchema in openapi.ts decides it), and how many. */
export function fileCount(p: PropertySchema): number {
  if (p.format === 'binary') return 1;
  if (typeOf(p) === 'array' && p.items?.format === 'binary') return p.maxItems ?? 1;
  return 0;
}

/** The file properties of a form, in the contract's order. */
export function fileFields(schema: FormSchema): string[] {
  return Object.entries(schema.properties)
    .filter(([, p]) => fileCount(p) > 0)
    .map(([name]) => name);
}

/** A description on one line, without Markdown's code ticks (a tooltip shows them raw). */
const tooltip = (p: PropertySchema): string | undefined => p.description?.replace(/`/g, '').replace(/\s+/g, ' ').trim() || undefined;

/** The default the page may show as the input's value: a constant one, not one settled per job. */
const constantDefault = (p: PropertySchema): unknown => (p['x-diffid-default'] === undefined ? p.default : undefined);

/**
 * What happens when the field is left empty: from `x-diffid-default`, else from the description's
 * "Default — …" clause or its "… when absent" (e.g. "the largest face", "random").
 */
function placeholder(p: PropertySchema): string | undefined {
  const settled = p['x-diffid-default'];
  if (settled !== undefined) return SETTLED_DEFAULTS[settled] ?? settled;
  const text = tooltip(p) ?? '';
  return /Default — ([^.,;(]+)/.exec(text)?.[1]?.trim() ?? /(\w+) when absent/.exec(text)?.[1];
}

function renderFile(name: string, p: PropertySchema, options: RenderOptions, required: boolean): string {
  const most = fileCount(p);
  const multiple = typeOf(p) === 'array';
  const label = `${p.title ?? name}${multiple && most > 1 ? ` (up to ${most})` : ''}`;
  const hint = multiple ? 'drop them here or choose' : 'drop it here or choose';
  const input = attrs({ id: `${options.prefix}-${name}`, name, type: 'file', accept: options.accept?.[name], multiple, required, title: tooltip(p) });
  return `<label class="drop"${attrs({ title: tooltip(p) })}><span>${escapeHtml(label)} <span class="hint">— ${hint}</span></span><input${input}></label>`;
}

function renderField(name: string, p: PropertySchema, options: RenderOptions, required: boolean): string {
  const id = `${options.prefix}-${name}`;
  const title = tooltip(p);
  const label = escapeHtml(p.title ?? name.replaceAll('_', ' '));
  const start = options.start?.[name] ?? constantDefault(p);
  const type = typeOf(p);
  const wrap = (control: string, cls?: string) => `<label${attrs({ class: cls, title })}>${label} ${control}</label>`;

  // A boolean the server defaults is a checkbox showing that default; playground.js sends a
  // checkbox's state either way, since an unchecked one is otherwise left out of the form.
  if (type === 'boolean' && start !== undefined && p.enum === undefined) {
    return `<label${attrs({ class: 'check', title })}><input${attrs({ id, name, type: 'checkbox', value: 'true', checked: start === true || start === 'true', title })}> ${label}</label>`;
  }
  // Enums, and booleans the server settles itself: a select, empty when nothing is chosen.
  if (p.enum !== undefined || type === 'boolean') {
    const values = p.enum ?? [true, false];
    const chosen = start === undefined ? undefined : String(start);
    const empty = chosen === undefined || !values.some((v) => String(v) === chosen) ? `<option value=""${attrs({ selected: true })}>${escapeHtml(placeholder(p) ?? '—')}</option>` : '';
    const items = values.map((v) => `<option${attrs({ value: String(v), selected: String(v) === chosen })}>${escapeHtml(v)}</option>`).join('');
    return wrap(`<select${attrs({ id, name, required, title })}>${empty}${items}</select>`);
  }
  if ((type === 'integer' || type === 'number') && p['x-playground-input'] === 'slider') {
    if (p.minimum === undefined || p.maximum === undefined || start === undefined) throw new Error(`openapi.yaml: ${name} is a slider, so it needs a minimum, a maximum and a default`);
    // Continuous, so the default is a value it can hold; playground.js keeps the <output> current.
    const step = type === 'integer' ? 1 : 'any';
    const input = attrs({ id, name, type: 'range', min: p.minimum, max: p.maximum, step, value: start as AttrValue, title });
    return wrap(`<span class="slider"><input${input}><output${attrs({ for: id })}>${escapeHtml(start)}</output></span>`);
  }
  if (p['x-playground-input'] !== undefined) throw new Error(`openapi.yaml: ${name} has x-playground-input: ${p['x-playground-input']}; only a number takes slider`);
  if (type === 'integer' || type === 'number') {
    const input = attrs({
      id, name, type: 'number', min: p.minimum, max: p.maximum, step: type === 'integer' ? 1 : 'any',
      value: start as AttrValue, placeholder: start === undefined ? placeholder(p) : undefined, required, title,
    });
    return wrap(`<input${input}>`);
  }
  // Long text (a prompt, a list) gets a line of its own.
  const wide = p.maxLength === undefined || p.maxLength > 64;
  const input = attrs({
    id, name, type: 'text', maxlength: p.maxLength, list: p['x-stands-in-for'] === undefined ? undefined : 'stored-identities',
    value: start === undefined || start === '' ? undefined : String(start), placeholder: start === undefined ? placeholder(p) : undefined, required, title,
  });
  return wrap(`<input${input}>`, wide ? 'wide' : undefined);
}

/**
 * Renders a multipart form's inputs from its schema: drop zones for its files, and its other
 * properties as inputs by type, the important ones up front and the rest under "More options".
 * Throws on an `x-playground` it does not know, or a required property it is told to hide.
 */
export function renderForm(schema: FormSchema, options: RenderOptions): RenderedForm {
  const required = new Set(schema.required ?? []);
  const files: string[] = [];
  const upFront: string[] = [];
  const more: string[] = [];
  for (const [name, p] of Object.entries(schema.properties)) {
    const placement = p['x-playground'];
    if (placement !== undefined && !PLACEMENTS.has(placement)) throw new Error(`openapi.yaml: ${name} has x-playground: ${placement}; it takes advanced or hidden`);
    if (placement === 'hidden') {
      if (required.has(name)) throw new Error(`openapi.yaml: ${name} is required, so the playground cannot hide it`);
      continue;
    }
    if (fileCount(p) > 0) files.push(renderFile(name, p, options, required.has(name)));
    else (placement === 'advanced' && !required.has(name) ? more : upFront).push(renderField(name, p, options, required.has(name)));
  }
  const indent = (text: string) => text.replace(/^/gm, '  ');
  const row = (items: string[], cls = 'row') => `<div class="${cls}">\n${indent(items.join('\n'))}\n</div>`;
  return {
    files: files.length ? row(files, 'row files') : '',
    fields: [upFront.length ? row(upFront) : '', more.length ? `<details class="more"><summary>More options</summary>\n${indent(row(more))}\n</details>` : ''].filter(Boolean).join('\n'),
  };
}

/**
 * The media types each file property of a form takes, from the multipart encoding of the
 * operation whose body is that schema (e.g. image/jpeg,image/png,image/webp); {} when none says.
 */
export function acceptedTypes(paths: Record<string, Record<string, unknown>>, schemaName: string): Record<string, string> {
  const ref = `#/components/schemas/${schemaName}`;
  for (const item of Object.values(paths)) {
    for (const operation of Object.values(item)) {
      const media = (operation as { requestBody?: { content?: Record<string, { schema?: { $ref?: string }; encoding?: Record<string, { contentType?: unknown }> }> } } | null)
        ?.requestBody?.content?.['multipart/form-data'];
      if (media?.schema?.$ref !== ref) continue;
      return Object.fromEntries(
        Object.entries(media.encoding ?? {}).flatMap(([name, e]) => (typeof e.contentType === 'string' ? [[name, e.contentType.replace(/\s+/g, '')]] : [])),
      );
    }
  }
  return {};
}

/**
 * The page with each `<!-- SchemaName files -->` and `<!-- SchemaName fields -->` marker replaced
 * by that form's rendered part. Throws when two elements end up with one id (a contract property
 * named like one of the page's own elements, say `status`), which would break the script quietly.
 */
export function fillPage(template: string, render: (schemaName: string) => RenderedForm): string {
  const rendered = new Map<string, RenderedForm>();
  const page = template.replace(/^([ \t]*)<!-- (\w+) (files|fields) -->/gm, (_marker, indent: string, name: string, part: 'files' | 'fields') => {
    let form = rendered.get(name);
    if (!form) rendered.set(name, (form = render(name)));
    return form[part].replace(/^(?=.)/gm, indent);
  });
  const seen = new Set<string>();
  for (const match of page.matchAll(/\sid="([^"]*)"/g)) {
    const id = match[1] ?? '';
    if (seen.has(id)) throw new Error(`the playground page has two elements with the id ${id}`);
    seen.add(id);
  }
  return page;
}
