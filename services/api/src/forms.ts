// Reads a multipart form as its openapi.yaml schema allows: its files by name, count and bytes
// (each is sniffed and its header decoded, so that a file that is no image never reaches the
// queue), its text fields by name, raw. The text fields become a job's parameters in one step
// (settleJob, @diffid/shared/job-params), which checks them against the same schema.

import type {} from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import { DiffIdError, inputLabel, type InputName } from '@diffid/shared/contract';
import { MAX_JOB_PIXELS, checkImage, sniffImageFormat } from '@diffid/shared/image';
import { formSchema } from '@diffid/shared/openapi';

/** Bytes one uploaded image may have. */
export const MAX_FILE_BYTES = 20 * 1024 * 1024;
/** Bytes a form may spend on its text fields and multipart framing, besides its files. */
export const MAX_FIELDS_BYTES = 1024 * 1024;

const mb = (bytes: number) => Math.round(bytes / 1024 / 1024);

export interface ParsedForm {
  /** The text fields as sent, not yet checked against the schema. */
  fields: Record<string, string>;
  /** Each file field's uploads, in the order they came. */
  files: Record<string, Buffer[]>;
}

/**
 * A form reader for one openapi.yaml multipart schema. Its files are photos to decode, checked
 * here, unless `files: 'any'` (POST /verify reads whatever file it is given, bytes only).
 */
export function formReader(schemaName: string, o: { files: 'images' | 'any' } = { files: 'images' }) {
  const schema = formSchema(schemaName);
  const fieldNames = new Set(Object.keys((schema.fields as { properties: Record<string, unknown> }).properties));
  const maxBodyBytes = Object.values(schema.maxFiles).reduce((sum, n) => sum + n * MAX_FILE_BYTES, MAX_FIELDS_BYTES);
  // Per-request limits replace the plugin's as a whole, so every one is given here.
  const partLimits = {
    fileSize: MAX_FILE_BYTES,
    files: Object.values(schema.maxFiles).reduce((sum, n) => sum + n, 0) + 1,
    fields: fieldNames.size + 1,
    parts: fieldNames.size + schema.files.length + 8,
    fieldSize: 16 * 1024,
  };

  return async function readForm(request: FastifyRequest): Promise<ParsedForm> {
    if (!request.isMultipart()) {
      throw new DiffIdError('NOT_MULTIPART', 'send the request as multipart/form-data (for example curl -F image=@face.jpg -F prompt=...)');
    }
    const fields: Record<string, string> = {};
    const files: Record<string, Buffer[]> = {};
    // The tripwire ends the read the moment a limit is crossed, whatever the parser is doing: a
    // file over its size (busboy would otherwise read on to the part's end), or a body over the
    // route's total (an endless preamble or part never yields to the loop below).
    let trip: (err: DiffIdError) => void = () => undefined;
    const tripped = new Promise<never>((_, reject) => (trip = reject));
    tripped.catch(() => undefined);
    let seen = 0;
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > maxBodyBytes) trip(new DiffIdError('FILE_TOO_LARGE', `the request body may be at most ${mb(maxBodyBytes)} MB on this route`));
    };
    request.raw.on('data', onData);
    const fileTooLarge = () => trip(new DiffIdError('FILE_TOO_LARGE', `each image may be at most ${mb(MAX_FILE_BYTES)} MB`));
    const read = async () => {
      for await (const part of request.parts({ limits: partLimits })) {
        const name = part.fieldname;
        if (part.type === 'file') {
          part.file.once('limit', fileTooLarge);
          if (!schema.files.includes(name)) {
            throw new DiffIdError('UNEXPECTED_FIELD', `this route takes no file "${name}"; its files are ${schema.files.join(', ')}`);
          }
          const list = (files[name] ??= []);
          const most = schema.maxFiles[name] ?? 1;
          if (list.length >= most) {
            throw new DiffIdError('UNEXPECTED_FIELD', most === 1 ? `the file "${name}" is given twice` : `the file "${name}" is given more than ${most} times`);
          }
          list.push(await part.toBuffer());
        } else {
          if (schema.files.includes(name)) throw new DiffIdError('VALIDATION', `"${name}" must be a file upload, not a text field`);
          if (!fieldNames.has(name)) throw new DiffIdError('UNEXPECTED_FIELD', `"${name}" is not a field of this route; its fields are ${[...fieldNames].join(', ')}`);
          if (name in fields) throw new DiffIdError('UNEXPECTED_FIELD', `the field "${name}" is given twice`);
          if (part.valueTruncated) {
            throw new DiffIdError(name.includes('prompt') ? 'PROMPT_TOO_LONG' : 'VALIDATION', `"${name}" is too long`);
          }
          fields[name] = String(part.value);
        }
      }
    };
    try {
      const reading = read();
      reading.catch(() => undefined);
      await Promise.race([reading, tripped]);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'FST_REQ_FILE_TOO_LARGE') throw new DiffIdError('FILE_TOO_LARGE', `each image may be at most ${mb(MAX_FILE_BYTES)} MB`);
      if (code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') {
        throw new DiffIdError('UNEXPECTED_FIELD', 'the form has more parts than this route takes');
      }
      if (err instanceof DiffIdError) throw err;
      // Everything else here is the body's own fault: no boundary, a truncated or garbled part.
      throw new DiffIdError('VALIDATION', `the multipart body is malformed (${(err as Error).message}); let your HTTP client build the form`);
    } finally {
      request.raw.off('data', onData);
    }
    for (const name of schema.requiredFiles) {
      if (!files[name]) throw new DiffIdError('MISSING_FILE', `the image file "${name}" is missing; attach it as a multipart file field`);
    }
    let pixels = 0;
    for (const [field, list] of Object.entries(files)) {
      for (const [i, bytes] of list.entries()) {
        const name = inputLabel(field as InputName, i, list.length);
        if (bytes.length === 0) throw new DiffIdError('UNSUPPORTED_IMAGE', `"${name}" is an empty file`);
        if (o.files === 'any') continue;
        if (!sniffImageFormat(bytes)) throw new DiffIdError('UNSUPPORTED_IMAGE', `"${name}" is not a JPEG, PNG or WebP image (checked by its bytes, whatever its declared type)`);
        // Only the header is read here (size, proportions, the pixel budget); the worker decodes
        // in full and fails the job, naming the file, when it does not decode.
        const { width, height } = await checkImage(bytes, name);
        pixels += width * height;
      }
    }
    if (pixels > MAX_JOB_PIXELS) {
      throw new DiffIdError('FILE_TOO_LARGE', `the images of one request may have at most ${MAX_JOB_PIXELS / 1e6} megapixels together (these have ${(pixels / 1e6).toFixed(1)}); send smaller photos`);
    }
    return { fields, files };
  };
}
