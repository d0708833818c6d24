// NumPy .npy output for embedding matrices (float32, C order), so that numpy.load / np.memmap can
// read what the engine produced. Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { dirname } from 'node:path';

if (endianness() !== 'LE') throw new Error('npy: big-endian hosts are not supported');

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
/** numpy aligns the data start to 64 bytes so that memory-mapped arrays are aligned. */
const ALIGN = 64;
const CHUNK_BYTES = 16 << 20;

function checkShape(shape: readonly number[]): number {
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new Error(`npy: invalid shape ${JSON.stringify(shape)}`);
  return shape.reduce((a, b) => a * b, 1);
}

/** The v1.0 preamble and header for a little-endian float32 C-order array. */
export function npyHeader(shape: readonly number[]): Uint8Array {
  checkShape(shape);
  // A 1-tuple needs its trailing comma in Python syntax.
  const tuple = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${tuple}, }`;
  const unpadded = MAGIC.length + 2 + 2 + dict.length + 1; // + '\n'
  const total = Math.ceil(unpadded / ALIGN) * ALIGN;
  const headerLen = total - MAGIC.length - 4;
  if (headerLen > 0xffff) throw new Error(`npy: header for shape ${JSON.stringify(shape)} too long for format v1.0`);
  const out = new Uint8Array(total);
  out.set(MAGIC, 0);
  out[6] = 1; // major version
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, headerLen, true);
  const text = dict + ' '.repeat(total - unpadded) + '\n';
  for (let i = 0; i < text.length; i++) out[10 + i] = text.charCodeAt(i);
  return out;
}

function writeFully(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, Math.min(bytes.length - done, CHUNK_BYTES));
}

/**
 * Streams a float32 matrix to disk row block by row block (a corpus' embeddings need not fit in
 * memory), into a temporary file that is renamed over `path` only once it is complete and fsynced.
 */
export class NpyWriter {
  readonly path: string;
  readonly shape: readonly number[];
  private readonly tmp: string;
  private readonly total: number;
  private written = 0;
  private fd: number | undefined;

  constructor(path: string, shape: readonly number[]) {
    this.path = path;
    this.shape = [...shape];
    this.total = checkShape(shape);
    this.tmp = `${path}.tmp-${process.pid}`;
    this.fd = openSync(this.tmp, 'w');
    try {
      writeFully(this.fd, npyHeader(shape));
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  /** Appends values in C order. */
  write(data: Float32Array): void {
    if (this.fd === undefined) throw new Error(`${this.path}: write after close/abort`);
    if (this.written + data.length > this.total) {
      const e = new Error(`${this.path}: ${this.written + data.length} values written but shape ${JSON.stringify(this.shape)} holds ${this.total}`);
      this.abort();
      throw e;
    }
    try {
      writeFully(this.fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } catch (e) {
      this.abort();
      throw e;
    }
    this.written += data.length;
  }

  /** Publishes the file; refuses (and discards it) when fewer values were written than the shape holds. */
  close(): void {
    if (this.fd === undefined) throw new Error(`${this.path}: close after close/abort`);
    if (this.written !== this.total) {
      const e = new Error(`${this.path}: only ${this.written} of ${this.total} values written for shape ${JSON.stringify(this.shape)}`);
      this.abort();
      throw e;
    }
    try {
      fsyncSync(this.fd);
      closeSync(this.fd);
      this.fd = undefined;
      renameSync(this.tmp, this.path);
    } catch (e) {
      this.abort();
      throw e;
    }
    // Persist the rename itself; best effort because not every platform can fsync a directory.
    try {
      const dfd = openSync(dirname(this.path), 'r');
      try { fsyncSync(dfd); } finally { closeSync(dfd); }
    } catch { /* best effort */ }
  }

  /** Discards the partial file. */
  abort(): void {
    if (this.fd !== undefined) {
      try { closeSync(this.fd); } catch { /* already failing */ }
      this.fd = undefined;
    }
    rmSync(this.tmp, { force: true });
  }
}

/** Writes a float32 array of the given shape (usually [N, D]) atomically. */
export function writeNpy(path: string, data: Float32Array, shape: readonly number[]): void {
  const n = checkShape(shape);
  if (data.length !== n) throw new Error(`${path}: ${data.length} values but shape ${JSON.stringify(shape)} holds ${n}`);
  const w = new NpyWriter(path, shape);
  w.write(data);
  w.close();
}

/** Reads a little-endian float32 C-order .npy (what writeNpy writes, and numpy.save of float32). */
export function readNpy(path: string): { shape: number[]; data: Float32Array } {
  const buf = readFileSync(path);
  if (buf.length < 10 || !MAGIC.every((b, i) => buf[i] === b)) throw new Error(`${path}: not a .npy file (bad magic)`);
  const major = buf[6];
  let headerLen: number, start: number;
  if (major === 1) {
    headerLen = buf.readUInt16LE(8);
    start = 10;
  } else if (major === 2 || major === 3) {
    headerLen = buf.readUInt32LE(8);
    start = 12;
  } else {
    throw new Error(`${path}: unsupported .npy version ${major}.${buf[7]}`);
  }
  if (start + headerLen > buf.length) throw new Error(`${path}: header runs past the end of the file (truncated?)`);
  const header = buf.subarray(start, start + headerLen).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw new Error(`${path}: cannot parse header ${JSON.stringify(header)}`);
  if (descr !== '<f4') throw new Error(`${path}: dtype ${descr} is not supported (expected '<f4')`);
  if (fortran !== 'False') throw new Error(`${path}: Fortran-order arrays are not supported`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new Error(`${path}: bad shape (${shapeText})`);
  const n = shape.reduce((a, b) => a * b, 1);
  const dataStart = start + headerLen;
  if (buf.length - dataStart !== n * 4) {
    throw new Error(`${path}: ${buf.length - dataStart} data bytes but shape ${JSON.stringify(shape)} needs ${n * 4}`);
  }
  // Copy into a fresh buffer: the file's data start need not be 4-byte aligned inside Node's Buffer pool.
  const data = new Float32Array(n);
  new Uint8Array(data.buffer).set(buf.subarray(dataStart));
  return { shape, data };
}
