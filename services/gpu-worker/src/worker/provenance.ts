// Provenance written into every output file (PNG, WebP, GIF, MP4): that it is AI-generated — IPTC's
// digital source type, which viewers and platforms read: "trainedAlgorithmicMedia" for a
// generate, "compositeWithTrainedAlgorithmicMedia" for a morph, which mixes two real people —
// what made it (service, bundle name and manifest digest), and how (job kind, seed, parameters),
// as an XMP packet.

import { readFileSync } from 'node:fs';

/** What an output image says about where it came from. */
export interface Provenance {
  kind: string;
  bundle: string;
  /** sha256 of the bundle's manifest.json, which names every file's sha256 in turn. */
  bundleDigest: string;
  seed: number;
  params: object;
  /** Morph frames: the factor. */
  alpha?: number;
}

/** IPTC's digital source type of each job kind's outputs (a morph composes two people's faces). */
export function digitalSourceType(kind: string): string {
  return kind === 'morph' ? COMPOSITE_SOURCE_TYPE : AI_GENERATED_SOURCE_TYPE;
}

export const SERVICE_NAME = 'Diff-ID Serve';
/** The version C2PA manifests name as the software agent's: the worker package's. */
export const SERVICE_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
export const AI_GENERATED_SOURCE_TYPE = 'http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia';
export const COMPOSITE_SOURCE_TYPE = 'http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia';

const escapeXml = (s: string) => s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] as string);

/** The XMP packet for one output; the same provenance always gives the same text. */
export function provenanceXmp(p: Provenance): string {
  const attr = (name: string, value: string | number) => `\n   ${name}="${escapeXml(String(value))}"`;
  return (
    '<?xpacket begin="\uFEFF" id="W5M0MpCehiHzreSzNTczkc9d"?>\n' +
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n' +
    ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n' +
    '  <rdf:Description rdf:about=""' +
    '\n   xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"' +
    '\n   xmlns:xmp="http://ns.adobe.com/xap/1.0/"' +
    '\n   xmlns:diffid="https://github.com/diffid-serve/ns/1.0/"' +
    attr('Iptc4xmpExt:DigitalSourceType', digitalSourceType(p.kind)) +
    attr('xmp:CreatorTool', SERVICE_NAME) +
    attr('diffid:AIGenerated', 'true') +
    attr('diffid:Kind', p.kind) +
    attr('diffid:Bundle', p.bundle) +
    attr('diffid:BundleManifestSha256', p.bundleDigest) +
    attr('diffid:Seed', p.seed) +
    (p.alpha === undefined ? '' : attr('diffid:Alpha', p.alpha)) +
    attr('diffid:Parameters', JSON.stringify(p.params)) +
    '/>\n </rdf:RDF>\n</x:xmpmeta>\n<?xpacket end="r"?>'
  );
}
