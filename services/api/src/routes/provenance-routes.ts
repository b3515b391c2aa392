// POST /verify: what a file says of where it came from — its C2PA manifest, read and validated
// (@diffid/shared/c2pa), and its XMP packet — for anyone holding the file, with or without the job.
import type { FastifyInstance } from 'fastify';
import { c2paVerifier } from '@diffid/shared/c2pa';
import { imageXmp } from '@diffid/shared/image';
import { componentSchema } from '@diffid/shared/openapi';
import { formReader } from '../forms.ts';

const errorSchema = componentSchema('Error');

/**
 * The XMP packet of a file: found as text wherever the format keeps it uncompressed (PNG iTXt,
 * WebP, GIF's application extension, MP4's uuid box, JPEG APP1), else as sharp reads it.
 */
async function xmpOf(bytes: Buffer): Promise<string> {
  const start = bytes.indexOf('<x:xmpmeta');
  const end = start < 0 ? -1 : bytes.indexOf('</x:xmpmeta>', start);
  if (end > start) return bytes.toString('utf8', start, end + '</x:xmpmeta>'.length);
  return imageXmp(bytes).catch(() => '');
}

/** One property of an XMP packet, written as an attribute or as an element (XML escapes undone). */
function xmpProperty(xmp: string, name: string): string | null {
  const quoted = name.replace(':', '\\:');
  const m = new RegExp(`${quoted}="([^"]{0,2048})"`).exec(xmp) ?? new RegExp(`<${quoted}>([^<]{0,2048})</${quoted}>`).exec(xmp);
  if (!m) return null;
  return (m[1] as string).replace(/&(lt|gt|quot|apos|amp);/g, (_, e: string) => ({ lt: '<', gt: '>', quot: '"', apos: "'", amp: '&' })[e] as string);
}

export async function provenanceRoutes(app: FastifyInstance): Promise<void> {
  const read = formReader('VerifyForm', { files: 'any' });
  const c2pa = c2paVerifier();
  app.addHook('onClose', async () => c2pa.close());
  app.post('/verify', { schema: { response: { 200: componentSchema('Verification'), '4xx': errorSchema, '5xx': errorSchema } } }, async (request) => {
    const { files } = await read(request);
    const bytes = files.image?.[0] ?? Buffer.alloc(0);
    const xmp = await xmpOf(bytes);
    return {
      c2pa: await c2pa.verify(bytes),
      xmp: {
        present: xmp.length > 0,
        digital_source_type: xmpProperty(xmp, 'Iptc4xmpExt:DigitalSourceType'),
        creator_tool: xmpProperty(xmp, 'xmp:CreatorTool'),
        kind: xmpProperty(xmp, 'diffid:Kind'),
      },
    };
  });
}
