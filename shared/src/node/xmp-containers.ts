// An XMP packet placed in PNG, GIF and MP4 files as the XMP specification (Part 3, "Storage in
// files") places it, for the formats whose encoders here do not: PNG in an uncompressed iTXt chunk
// keyed "XML:com.adobe.xmp" before the image data; GIF in an "XMP DataXMP" application extension
// followed by its 258-byte "magic trailer" (which lets GIF readers skip the packet as sub-blocks);
// MP4 in a top-level `uuid` box of type BE7ACFCB-97A9-42E8-9C71-999491E3AFAC. WebP's XMP chunk is
// written by its encoder (image.ts). Byte surgery only: no pixel is touched.
import { crc32 } from 'node:zlib';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** One PNG chunk: length, type, data, CRC-32 of type and data. */
function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

/** The PNG with one more chunk right after IHDR (so before any image data). */
export function pngWithChunk(png: Buffer, type: string, data: Buffer): Buffer {
  if (!png.subarray(0, 8).equals(PNG_SIGNATURE) || png.toString('latin1', 12, 16) !== 'IHDR') throw new Error('not a PNG that starts with its IHDR chunk');
  const ihdrEnd = 8 + 12 + png.readUInt32BE(8);
  return Buffer.concat([png.subarray(0, ihdrEnd), pngChunk(type, data), png.subarray(ihdrEnd)]);
}

/** The PNG with `xmp` in an uncompressed iTXt chunk right after IHDR. */
export function pngWithXmp(png: Buffer, xmp: string): Buffer {
  // keyword \0, compression flag 0 (none), method 0, language tag "" \0, translated keyword "" \0, text.
  return pngWithChunk(png, 'iTXt', Buffer.concat([Buffer.from('XML:com.adobe.xmp\0', 'latin1'), Buffer.from([0, 0, 0, 0]), Buffer.from(xmp, 'utf8')]));
}

/** The GIF with `xmp` in an application extension right after its header and global colour table. */
export function gifWithXmp(gif: Buffer, xmp: string): Buffer {
  const magic = gif.toString('latin1', 0, 6);
  if (magic !== 'GIF89a' && magic !== 'GIF87a') throw new Error('not a GIF');
  const packed = gif[10] as number;
  // The logical screen descriptor ends at 13; a global colour table of 3 · 2^(n+1) bytes may follow.
  const tableEnd = 13 + (packed & 0x80 ? 3 * 2 ** ((packed & 0x07) + 1) : 0);
  const text = Buffer.from(xmp, 'utf8');
  if (text.includes(0)) throw new Error('an XMP packet for GIF must not hold NUL bytes');
  // The trailer 0x01, 0xFF, 0xFE … 0x00, then the block terminator.
  const trailer = Buffer.from([0x01, ...Array.from({ length: 256 }, (_, i) => 255 - i), 0x00]);
  const extension = Buffer.concat([Buffer.from([0x21, 0xff, 0x0b]), Buffer.from('XMP DataXMP', 'latin1'), text, trailer]);
  return Buffer.concat([Buffer.from('GIF89a', 'latin1'), gif.subarray(6, tableEnd), extension, gif.subarray(tableEnd)]);
}

/** The XMP box type of MP4 and other ISO media files. */
const XMP_UUID = Buffer.from('be7acfcb97a942e89c71999491e3afac', 'hex');

/** The MP4 with `xmp` in a top-level uuid box at its end (no offset inside the file moves). */
export function mp4WithXmp(mp4: Buffer, xmp: string): Buffer {
  if (mp4.toString('latin1', 4, 8) !== 'ftyp') throw new Error('not an MP4 that starts with its ftyp box');
  const text = Buffer.from(xmp, 'utf8');
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + 16 + text.length, 0);
  head.write('uuid', 4, 'latin1');
  return Buffer.concat([mp4, head, XMP_UUID, text]);
}
