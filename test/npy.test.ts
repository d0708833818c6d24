import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NpyWriter, npyHeader, readNpy, writeNpy } from '../src/npy.ts';
import { PYTHON, SKIP_REASON, runPython } from './reference/python.ts';

const made: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'xlir-npy-')); made.push(d); return d; };
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });
const bitsOf = (a: Float32Array) => [...new Uint32Array(a.buffer, a.byteOffset, a.length)];

test('v1.0 header: magic, version, <f4 C order, shape tuple, 64-byte aligned, newline-terminated', () => {
  const h = npyHeader([3, 4]);
  assert.deepEqual([...h.subarray(0, 8)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  assert.equal(h.length % 64, 0);
  const len = Buffer.from(h).readUInt16LE(8);
  assert.equal(10 + len, h.length);
  const text = Buffer.from(h.subarray(10)).toString('latin1');
  assert.match(text, /^\{'descr': '<f4', 'fortran_order': False, 'shape': \(3, 4\), \} *\n$/);
  assert.match(Buffer.from(npyHeader([5])).toString('latin1'), /'shape': \(5,\)/);
  assert.throws(() => npyHeader([2, -1]), /invalid shape/);
});

test('round trip (N, D), 1-D and empty', () => {
  const dir = tmp();
  const data = new Float32Array([1, -2, 3.5, NaN, Infinity, -0]);
  writeNpy(join(dir, 'a.npy'), data, [2, 3]);
  const a = readNpy(join(dir, 'a.npy'));
  assert.deepEqual(a.shape, [2, 3]);
  assert.deepEqual(bitsOf(a.data), bitsOf(data));
  assert.equal(readFileSync(join(dir, 'a.npy')).length, npyHeader([2, 3]).length + 24);

  writeNpy(join(dir, 'b.npy'), new Float32Array([7, 8]), [2]);
  assert.deepEqual(readNpy(join(dir, 'b.npy')), { shape: [2], data: new Float32Array([7, 8]) });
  writeNpy(join(dir, 'c.npy'), new Float32Array(0), [0, 768]);
  assert.deepEqual(readNpy(join(dir, 'c.npy')).shape, [0, 768]);
  assert.deepEqual(readdirSync(dir).sort(), ['a.npy', 'b.npy', 'c.npy'], 'no temporary files left');
  assert.throws(() => writeNpy(join(dir, 'd.npy'), new Float32Array(5), [2, 3]), /5 values but shape \[2,3\] holds 6/);
  assert.equal(existsSync(join(dir, 'd.npy')), false);
});

test('NpyWriter streams row blocks and publishes only a complete file', () => {
  const dir = tmp();
  const path = join(dir, 'e.npy');
  const w = new NpyWriter(path, [4, 2]);
  w.write(new Float32Array([0, 1, 2, 3]));
  assert.equal(existsSync(path), false, 'nothing under the real name before close');
  w.write(new Float32Array([4, 5, 6, 7]).subarray(0, 4));
  w.close();
  assert.deepEqual([...readNpy(path).data], [0, 1, 2, 3, 4, 5, 6, 7]);

  const before = readFileSync(path);
  const short = new NpyWriter(path, [4, 2]);
  short.write(new Float32Array(6));
  assert.throws(() => short.close(), /only 6 of 8 values written/);
  const long = new NpyWriter(path, [1, 2]);
  assert.throws(() => long.write(new Float32Array(3)), /3 values written but shape \[1,2\] holds 2/);
  assert.throws(() => long.close(), /after close\/abort/);
  assert.deepEqual(readFileSync(path), before, 'failed writers leave the previous file intact');
  assert.deepEqual(readdirSync(dir), ['e.npy'], 'and no temporary files');
});

test('readNpy rejects what it cannot read faithfully', () => {
  const dir = tmp();
  writeFileSync(join(dir, 'bad.npy'), Buffer.from('PK\x03\x04 not numpy'));
  assert.throws(() => readNpy(join(dir, 'bad.npy')), /bad\.npy: not a \.npy file/);
  writeNpy(join(dir, 'ok.npy'), new Float32Array(6), [2, 3]);
  const bytes = readFileSync(join(dir, 'ok.npy'));
  writeFileSync(join(dir, 'cut.npy'), bytes.subarray(0, bytes.length - 4));
  assert.throws(() => readNpy(join(dir, 'cut.npy')), /20 data bytes but shape \[2,3\] needs 24/);
  writeFileSync(join(dir, 'f8.npy'), Buffer.from(bytes.toString('latin1').replace("'<f4'", "'<f8'"), 'latin1'));
  assert.throws(() => readNpy(join(dir, 'f8.npy')), /dtype <f8 is not supported/);
});

test('interop with numpy', (t) => {
  if (!PYTHON) { t.skip(SKIP_REASON); return; }
  const dir = tmp();
  const data = Float32Array.from({ length: 15 }, (_, i) => Math.sin(i) * 1e3);
  writeNpy(join(dir, 'ours.npy'), data, [5, 3]);
  const seen = runPython<{ dtype: string; shape: number[]; fortran: boolean; bits: number[]; mmap_equal: boolean }>('npy-read', join(dir, 'ours.npy'));
  assert.equal(seen.dtype, 'float32');
  assert.deepEqual(seen.shape, [5, 3]);
  assert.equal(seen.fortran, false);
  assert.equal(seen.mmap_equal, true);
  assert.deepEqual(seen.bits, bitsOf(data));

  const made = runPython<{ shape: number[]; bits: number[] }>('npy-make', join(dir, 'theirs.npy'));
  const theirs = readNpy(join(dir, 'theirs.npy'));
  assert.deepEqual(theirs.shape, made.shape);
  assert.deepEqual(bitsOf(theirs.data), made.bits);
});
