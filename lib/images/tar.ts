// Decoding a layer's tar: ustar headers with GNU and pax extensions, each
// header's checksum, and sparse files in the formats GNU tar writes (the old
// GNU 'S' entries, pax 0.0, 0.1 and 1.0). The tar is untrusted: every number
// is checked and every map bounded, and whatever cannot be decoded is an
// UnsafeLayerError, never skipped.
import { UnsafeLayerError } from "../errors.js";

export const BLOCK = 512;
// Bounds for what a tar may make us hold: a metadata entry (pax records, a
// long name) and the segments of one sparse file.
export const MAX_META_BYTES = 1 << 20;
const MAX_SPARSE_SEGMENTS = 1 << 16;

export interface RawHeader {
  /** The type flag ("0" for a NUL one). */
  type: string;
  name: string;
  linkpath: string;
  /** What the entry stores in the archive. */
  size: number;
  mode: number;
  uid: number;
  gid: number;
  block: Buffer;
}

/** A sparse file: its apparent size and the stored segments, in order. */
export interface SparseMap {
  realSize: number;
  segments: { offset: number; length: number }[];
}

/** Pax records; repeated GNU.sparse.offset/numbytes (format 0.0) are kept in order. */
export interface Pax {
  values: Record<string, string>;
  sparsePairs: number[];
}
export const noPax = (): Pax => ({ values: {}, sparsePairs: [] });

function str(b: Buffer, start: number, len: number): string {
  const s = b.subarray(start, start + len);
  const nul = s.indexOf(0);
  return s.subarray(0, nul < 0 ? s.length : nul).toString("utf8");
}

// Octal, or GNU's base-256 for large values; NaN for anything else.
function num(b: Buffer, start: number, len: number): number {
  const f = b.subarray(start, start + len);
  if (f[0] === 0x80) {
    let v = 0;
    for (let i = 1; i < f.length; i++) v = v * 256 + f[i];
    return v;
  }
  const text = str(b, start, len).trim();
  if (!text) return 0;
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : NaN;
}

/** The header in `block`, or UnsafeLayerError if its checksum does not match. */
export function decodeHeader(block: Buffer): RawHeader {
  // The sum of the header's bytes with the checksum field read as spaces;
  // some old tars summed signed bytes.
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) {
    if (i >= 148 && i < 156) continue;
    unsigned += block[i];
    signed += block[i] > 127 ? block[i] - 256 : block[i];
  }
  const stored = num(block, 148, 8);
  if (stored !== unsigned && stored !== signed)
    throw new UnsafeLayerError(`a tar header's checksum does not match (${stored} stored, ${unsigned} computed): the layer is corrupt and is refused`);
  // POSIX ustar has a name prefix there; GNU's format keeps times and the
  // sparse map in those bytes.
  const posix = block.subarray(257, 263).equals(Buffer.from("ustar\0", "latin1"));
  const prefix = posix ? str(block, 345, 155) : "";
  const base = str(block, 0, 100);
  return {
    type: block[156] === 0 ? "0" : String.fromCharCode(block[156]),
    name: prefix ? `${prefix}/${base}` : base,
    linkpath: str(block, 157, 100),
    size: num(block, 124, 12),
    mode: num(block, 100, 8),
    uid: num(block, 108, 8),
    gid: num(block, 116, 8),
    block,
  };
}

export function parsePax(text: string): Pax {
  const pax = noPax();
  let rest = Buffer.from(text, "utf8");
  while (rest.length) {
    const space = rest.indexOf(32);
    const len = parseInt(rest.subarray(0, space).toString(), 10);
    if (!(len > 0) || space < 0 || len > rest.length) throw new UnsafeLayerError("malformed pax header");
    const record = rest.subarray(space + 1, len - 1).toString("utf8");
    const eq = record.indexOf("=");
    const [key, value] = [record.slice(0, eq), record.slice(eq + 1)];
    if (key === "GNU.sparse.offset" || key === "GNU.sparse.numbytes") pax.sparsePairs.push(Number(value));
    else pax.values[key] = value;
    rest = rest.subarray(len);
  }
  return pax;
}

const sparseError = (name: string, why: string) => new UnsafeLayerError(`tar entry "${name}" is a sparse file with ${why}; the layer is refused`);

/** Checks a map against the entry's stored data: ordered, within the file, adding up. */
export function checkSparseMap(name: string, map: SparseMap, storedBytes: number): SparseMap {
  if (!Number.isSafeInteger(map.realSize) || map.realSize < 0) throw sparseError(name, `a bad size (${map.realSize})`);
  if (map.segments.length > MAX_SPARSE_SEGMENTS) throw sparseError(name, `more than ${MAX_SPARSE_SEGMENTS} segments`);
  let end = 0;
  let total = 0;
  for (const { offset, length } of map.segments) {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < end || length < 0 || offset + length > map.realSize)
      throw sparseError(name, `a segment out of order or past its end (${offset}+${length})`);
    end = offset + length;
    total += length;
  }
  if (total !== storedBytes) throw sparseError(name, `segments of ${total} bytes for ${storedBytes} stored`);
  return map;
}

// Pairs of numbers (offset, length) as segments.
function pairs(values: number[], name: string): SparseMap["segments"] {
  if (values.length % 2) throw sparseError(name, "an odd number of map values");
  if (values.length / 2 > MAX_SPARSE_SEGMENTS) throw sparseError(name, `more than ${MAX_SPARSE_SEGMENTS} segments`);
  const segments = [];
  for (let i = 0; i < values.length; i += 2) segments.push({ offset: values[i], length: values[i + 1] });
  return segments;
}

/**
 * The sparse format a pax header announces: 0.0 and 0.1 carry the map in
 * the records, 1.0 at the start of the entry's data ("data"). Undefined
 * for a file that is not sparse.
 */
export function paxSparse(pax: Pax, name: string): { realName?: string; map?: SparseMap; mapInData?: number } | undefined {
  const v = pax.values;
  if (v["GNU.sparse.major"] !== undefined || v["GNU.sparse.minor"] !== undefined) {
    if (v["GNU.sparse.major"] !== "1" || v["GNU.sparse.minor"] !== "0")
      throw sparseError(name, `the unknown format ${v["GNU.sparse.major"]}.${v["GNU.sparse.minor"]}`);
    return { realName: v["GNU.sparse.name"], mapInData: Number(v["GNU.sparse.realsize"]) };
  }
  if (v["GNU.sparse.map"] !== undefined) {
    const values = v["GNU.sparse.map"] === "" ? [] : v["GNU.sparse.map"].split(",").map(Number);
    return { realName: v["GNU.sparse.name"], map: { realSize: Number(v["GNU.sparse.size"]), segments: pairs(values, name) } };
  }
  if (pax.sparsePairs.length || v["GNU.sparse.size"] !== undefined)
    return { realName: v["GNU.sparse.name"], map: { realSize: Number(v["GNU.sparse.size"]), segments: pairs(pax.sparsePairs, name) } };
  return undefined;
}

/**
 * Reads the map at the start of a pax 1.0 sparse entry's data from `next`
 * (512-byte blocks): decimal lines, the count first, then offset and
 * length pairs. Returns the map and how many bytes of data it took.
 */
export async function readDataMap(next: () => Promise<Buffer>, name: string, realSize: number): Promise<{ map: SparseMap; bytes: number }> {
  let text = "";
  let bytes = 0;
  const values: number[] = [];
  let count = -1;
  for (;;) {
    const lines = text.split("\n");
    text = lines.pop()!;
    for (const line of lines) {
      if (!/^\d+$/.test(line)) throw sparseError(name, "a malformed map");
      if (count < 0) {
        count = Number(line);
        if (count > MAX_SPARSE_SEGMENTS) throw sparseError(name, `more than ${MAX_SPARSE_SEGMENTS} segments`);
      } else values.push(Number(line));
    }
    if (count >= 0 && values.length >= 2 * count) break;
    if (bytes >= MAX_META_BYTES) throw sparseError(name, "a map over 1 MiB");
    text += (await next()).toString("latin1");
    bytes += BLOCK;
  }
  if (values.length !== 2 * count || text.replace(/\0+$/, "")) throw sparseError(name, "a malformed map");
  return { map: { realSize, segments: pairs(values, name) }, bytes };
}

/**
 * The map of a GNU 'S' entry: four segments in the header, 21 in each
 * extension block that follows while "isextended" is set (`next` reads
 * those blocks), and the apparent size.
 */
export async function gnuSparseMap(h: RawHeader, next: () => Promise<Buffer>): Promise<SparseMap> {
  const values: number[] = [];
  const take = (b: Buffer, start: number, entries: number) => {
    for (let i = 0; i < entries; i++) {
      const at = start + i * 24;
      if (b[at] === 0) break;
      values.push(num(b, at, 12), num(b, at + 12, 12));
    }
  };
  take(h.block, 386, 4);
  let extended = h.block[482] !== 0;
  while (extended) {
    if (values.length / 2 > MAX_SPARSE_SEGMENTS) throw sparseError(h.name, `more than ${MAX_SPARSE_SEGMENTS} segments`);
    const ext = await next();
    take(ext, 0, 21);
    extended = ext[504] !== 0;
  }
  return { realSize: num(h.block, 483, 12), segments: pairs(values, h.name) };
}
