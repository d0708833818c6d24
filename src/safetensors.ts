// Reading and writing the safetensors format (https://github.com/huggingface/safetensors):
//   [u64 little-endian N][N bytes of JSON header][raw little-endian tensor data]
// with header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}
// and offsets relative to the first byte after the header.
//
// Tensors are read one at a time through a file descriptor: an XLM-R checkpoint is over a gigabyte
// and must never be pulled into a single Buffer.
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { dirname } from 'node:path';

// Typed-array views are host-endian while the format is little-endian; every host Node supports
// in practice is little-endian, so refuse loudly instead of silently byte-swapping wrong.
if (endianness() !== 'LE') throw new Error('safetensors: big-endian hosts are not supported');

/** The dtypes of the safetensors specification, with their element sizes in bytes. */
const DTYPE_SIZES = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
} as const;

export type Dtype = keyof typeof DTYPE_SIZES;
/** Dtypes that can be loaded as Float32Array. */
export type FloatDtype = 'F64' | 'F32' | 'F16' | 'BF16';
const FLOAT_DTYPES: ReadonlySet<string> = new Set<FloatDtype>(['F64', 'F32', 'F16', 'BF16']);

/** Same bound as the reference implementation: a larger header is a corrupt file, not a model. */
const MAX_HEADER_BYTES = 100_000_000;
/** Bytes per read/write syscall: bounded so conversions need no tensor-sized scratch buffer. */
const IO_CHUNK_BYTES = 16 << 20;

export interface TensorInfo {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Byte range in the data section (after the header). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

const fmtShape = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/**
 * Parses and validates a header. `dataBytes` is the size of the data section, so that every tensor
 * can be checked to lie inside the file. Exported for tests; use SafetensorsFile to read files.
 */
export function parseHeader(file: string, headerBytes: Uint8Array, dataBytes: number): SafetensorsHeader {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new Error(`${file}: safetensors header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`${file}: safetensors header must be a JSON object, got ${Array.isArray(json) ? 'an array' : typeof json}`);
  }
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
        throw new Error(`${file}: "__metadata__" must be an object of strings`);
      }
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') throw new Error(`${file}: "__metadata__"."${k}" must be a string, got ${JSON.stringify(v)}`);
        metadata[k] = v;
      }
      continue;
    }
    tensors.set(name, parseEntry(file, name, entry, dataBytes));
  }
  checkNoOverlap(file, tensors);
  return { tensors, metadata };
}

function parseEntry(file: string, name: string, entry: unknown, dataBytes: number): TensorInfo {
  const where = `${file}: tensor "${name}"`;
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw new Error(`${where}: expected {dtype, shape, data_offsets}, got ${JSON.stringify(entry)}`);
  }
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_SIZES, dtype)) {
    throw new Error(`${where}: unknown dtype ${JSON.stringify(dtype)} (expected one of ${Object.keys(DTYPE_SIZES).join(', ')})`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new Error(`${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new Error(`${where}: data_offsets must be [begin, end] non-negative integers, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) throw new Error(`${where}: data_offsets [${begin}, ${end}] end before begin`);
  if (end > dataBytes) {
    throw new Error(`${where}: data_offsets [${begin}, ${end}] run past the end of the data section (${dataBytes} bytes; file truncated?)`);
  }
  const expected = numel(shape as number[]) * DTYPE_SIZES[dtype as Dtype];
  if (end - begin !== expected) {
    throw new Error(`${where}: ${end - begin} bytes in data_offsets but dtype ${dtype} x shape ${fmtShape(shape as number[])} needs ${expected}`);
  }
  return { name, dtype: dtype as Dtype, shape: shape as number[], begin, end };
}

function checkNoOverlap(file: string, tensors: Map<string, TensorInfo>): void {
  // Empty tensors occupy no bytes and cannot overlap anything.
  const spans = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < spans.length; i++) {
    const prev = spans[i - 1], cur = spans[i];
    if (cur.begin < prev.end) {
      throw new Error(`${file}: tensors "${prev.name}" [${prev.begin}, ${prev.end}) and "${cur.name}" [${cur.begin}, ${cur.end}) overlap`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Half-precision decoding

let f16Table: Float32Array | undefined;
/** All 65536 fp16 values as fp32: exact (every fp16 is representable) and faster than bit twiddling per element. */
function halfTable(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToNumber(h);
  }
  return f16Table;
}

/** Decodes IEEE 754 binary16 bits, including subnormals, infinities and NaN. */
export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** bfloat16 is the top half of a float32, so shifting the bits back is exact for every value. */
export function bf16BitsToNumber(b: number): number {
  const u = new Uint32Array([(b & 0xffff) << 16]);
  return new Float32Array(u.buffer)[0];
}

export function decodeF16(src: Uint16Array, dst: Float32Array, dstOffset = 0): void {
  const table = halfTable();
  for (let i = 0; i < src.length; i++) dst[dstOffset + i] = table[src[i]];
}

export function decodeBF16(src: Uint16Array, dst: Float32Array, dstOffset = 0): void {
  const out = new Uint32Array(dst.buffer, dst.byteOffset + dstOffset * 4, src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
}

/** float32 -> bfloat16 bits with round-to-nearest-even, as torch's .to(torch.bfloat16) does; NaN stays NaN. */
export function encodeBF16(src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const x = bits[i];
    if ((x & 0x7fffffff) > 0x7f800000) {
      dst[i] = (x >>> 16) | 0x40; // quiet NaN: plain truncation could turn a NaN into infinity
    } else {
      dst[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

function readFully(fd: number, file: string, target: Uint8Array, position: number): void {
  let done = 0;
  while (done < target.length) {
    const n = readSync(fd, target, done, Math.min(target.length - done, IO_CHUNK_BYTES), position + done);
    if (n === 0) throw new Error(`${file}: unexpected end of file at byte ${position + done} (file truncated?)`);
    done += n;
  }
}

/** An open safetensors file whose header has been validated; tensors are read on demand. */
export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  private readonly tensors: Map<string, TensorInfo>;
  private readonly dataStart: number;
  private fd: number | undefined;

  private constructor(path: string, fd: number, header: SafetensorsHeader, dataStart: number) {
    this.path = path;
    this.fd = fd;
    this.tensors = header.tensors;
    this.metadata = header.metadata;
    this.dataStart = dataStart;
  }

  static open(path: string): SafetensorsFile {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      if (size < 8) throw new Error(`${path}: ${size} bytes is too short for a safetensors file (needs at least the 8-byte header length; truncated?)`);
      const lenBytes = new Uint8Array(8);
      readFully(fd, path, lenBytes, 0);
      const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
      if (headerLen > BigInt(MAX_HEADER_BYTES)) {
        throw new Error(`${path}: header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
      }
      const n = Number(headerLen);
      if (8 + n > size) throw new Error(`${path}: header length ${n} runs past the end of the ${size}-byte file (truncated?)`);
      const headerBytes = new Uint8Array(n);
      readFully(fd, path, headerBytes, 8);
      const header = parseHeader(path, headerBytes, size - 8 - n);
      return new SafetensorsFile(path, fd, header, 8 + n);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.path}: no tensor "${name}"`);
    return t;
  }

  /** Reads one tensor as float32 (F32/F16/BF16 exactly, F64 rounded to nearest). */
  read(name: string): Float32Array {
    const t = this.info(name);
    if (this.fd === undefined) throw new Error(`${this.path}: read of "${name}" after close()`);
    if (!FLOAT_DTYPES.has(t.dtype)) {
      throw new Error(`${this.path}: tensor "${name}" has dtype ${t.dtype}; only F32, F16, BF16 and F64 can be loaded as floats`);
    }
    const n = numel(t.shape);
    const out = new Float32Array(n);
    const pos = this.dataStart + t.begin;
    if (t.dtype === 'F32') {
      readFully(this.fd, this.path, new Uint8Array(out.buffer), pos);
      return out;
    }
    const size = DTYPE_SIZES[t.dtype];
    const perChunk = Math.max(1, Math.floor(IO_CHUNK_BYTES / size));
    // A private ArrayBuffer keeps the scratch aligned for the 2- and 8-byte views below.
    const scratch = new Uint8Array(new ArrayBuffer(Math.min(n, perChunk) * size));
    for (let i = 0; i < n; i += perChunk) {
      const count = Math.min(perChunk, n - i);
      const bytes = scratch.subarray(0, count * size);
      readFully(this.fd, this.path, bytes, pos + i * size);
      if (t.dtype === 'F16') decodeF16(new Uint16Array(scratch.buffer, 0, count), out, i);
      else if (t.dtype === 'BF16') decodeBF16(new Uint16Array(scratch.buffer, 0, count), out, i);
      else out.set(new Float64Array(scratch.buffer, 0, count), i);
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Reads a whole (small) file into memory; for big checkpoints use SafetensorsFile and read per tensor. */
export function readSafetensors(path: string): { tensors: Map<string, { shape: number[]; data: Float32Array }>; metadata: Record<string, string> } {
  const f = SafetensorsFile.open(path);
  try {
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const name of f.names()) tensors.set(name, { shape: f.info(name).shape, data: f.read(name) });
    return { tensors, metadata: { ...f.metadata } };
  } finally {
    f.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface TensorToWrite {
  name: string;
  shape: number[];
  /** The data, or a function producing it so a large model is held in memory one tensor at a time. */
  data: Float32Array | (() => Float32Array);
}

export interface WriteOptions {
  metadata?: Record<string, string>;
  /** Stored dtype; BF16 rounds to nearest even. Default F32. */
  dtype?: 'F32' | 'BF16';
}

function writeFully(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, Math.min(bytes.length - done, IO_CHUNK_BYTES));
}

/** Makes a completed rename survive a crash; not every platform can fsync a directory, which is fine. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // best effort
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Builds the header bytes: keys in sorted order, padded with spaces to a multiple of 8 like the reference writer. */
function encodeHeader(entries: { name: string; shape: number[] }[], dtype: 'F32' | 'BF16', metadata: Record<string, string> | undefined): Uint8Array {
  // The JSON is assembled by hand because JS objects enumerate integer-like keys ("0", "1") first,
  // which would break the sorted order.
  const parts: string[] = [];
  if (metadata && Object.keys(metadata).length) {
    const keys = Object.keys(metadata).sort();
    parts.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(',')}}`);
  }
  let offset = 0;
  for (const e of entries) {
    const bytes = numel(e.shape) * DTYPE_SIZES[dtype];
    parts.push(`${JSON.stringify(e.name)}:{"dtype":"${dtype}","shape":${JSON.stringify(e.shape)},"data_offsets":[${offset},${offset + bytes}]}`);
    offset += bytes;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return header;
}

/**
 * Writes tensors atomically: the file appears under `path` complete and fsynced, or not at all
 * (a crash mid-save must never leave a half-written checkpoint under the real name).
 */
export function writeSafetensors(path: string, tensors: TensorToWrite[], opts: WriteOptions = {}): void {
  const dtype = opts.dtype ?? 'F32';
  for (const [k, v] of Object.entries(opts.metadata ?? {})) {
    if (typeof v !== 'string') throw new Error(`${path}: metadata "${k}" must be a string, got ${typeof v}`);
  }
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (let i = 0; i < sorted.length; i++) {
    const t = sorted[i];
    if (t.name === '__metadata__') throw new Error(`${path}: "__metadata__" is reserved and cannot name a tensor`);
    if (i > 0 && sorted[i - 1].name === t.name) throw new Error(`${path}: tensor "${t.name}" given twice`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new Error(`${path}: tensor "${t.name}" has invalid shape ${JSON.stringify(t.shape)}`);
  }
  const header = encodeHeader(sorted, dtype, opts.metadata);

  const tmp = `${path}.tmp-${process.pid}`;
  let fd: number | undefined = openSync(tmp, 'w');
  try {
    writeFully(fd, header);
    for (const t of sorted) {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      if (data.length !== numel(t.shape)) {
        throw new Error(`${path}: tensor "${t.name}" has ${data.length} values but shape ${fmtShape(t.shape)} needs ${numel(t.shape)}`);
      }
      if (dtype === 'F32') {
        writeFully(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      } else {
        const perChunk = IO_CHUNK_BYTES / 2;
        const scratch = new Uint16Array(Math.min(perChunk, data.length));
        for (let i = 0; i < data.length; i += perChunk) {
          const part = data.subarray(i, Math.min(i + perChunk, data.length));
          const out = scratch.subarray(0, part.length);
          encodeBF16(part, out);
          writeFully(fd, new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
        }
      }
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  try {
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(dirname(path));
}
