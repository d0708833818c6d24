import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SafetensorsFile, bf16BitsToNumber, decodeBF16, decodeF16, encodeBF16, f16BitsToNumber, readSafetensors, writeSafetensors,
} from '../src/safetensors.ts';
import { PYTHON, SKIP_REASON, runPython } from './reference/python.ts';

const made: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'xlir-st-')); made.push(d); return d; };
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });

/** A file from a header object and raw data bytes, to build exactly the corrupt inputs we want. */
function rawFile(path: string, header: unknown, data: Uint8Array = new Uint8Array(0), headerText?: string): string {
  const json = Buffer.from(headerText ?? JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, data]));
  return path;
}

const f32Bits = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0];
const bitsOf = (a: Float32Array) => [...new Uint32Array(a.buffer, a.byteOffset, a.length)];

test('round trip: shapes, values, metadata, sorted keys, 8-byte padding', () => {
  const dir = tmp();
  const path = join(dir, 'm.safetensors');
  const a = Float32Array.from({ length: 6 }, (_, i) => i * 0.5 - 1);
  const weird = new Float32Array([NaN, Infinity, -Infinity, -0, 1e-45, 3.4028234663852886e38]);
  writeSafetensors(path, [
    { name: 'z.last', shape: [2, 3], data: a },
    { name: '10', shape: [6], data: () => weird },
    { name: '2', shape: [], data: new Float32Array([7]) },
    { name: 'a.empty', shape: [0, 4], data: new Float32Array(0) },
  ], { metadata: { format: 'pt', note: 'hé "quoted"' } });

  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  assert.equal(n % 8, 0, 'header length is a multiple of 8');
  const headerText = bytes.subarray(8, 8 + n).toString('utf8');
  assert.match(headerText, /^\{.*\} *$/s, 'padding is trailing spaces');
  const keys = [...headerText.matchAll(/"([^"]+)":\{"dtype"/g)].map((m) => m[1]);
  assert.deepEqual(keys, ['10', '2', 'a.empty', 'z.last'], 'tensor keys sorted (integer-like keys included)');
  assert.ok(headerText.startsWith('{"__metadata__"'));
  assert.equal(bytes.length, 8 + n + 4 * (6 + 1 + 0 + 6), 'data section holds exactly the tensors');

  const { tensors, metadata } = readSafetensors(path);
  assert.deepEqual(metadata, { format: 'pt', note: 'hé "quoted"' });
  assert.deepEqual(tensors.get('z.last')!.shape, [2, 3]);
  assert.deepEqual([...tensors.get('z.last')!.data], [...a]);
  assert.deepEqual(bitsOf(tensors.get('10')!.data), bitsOf(weird), 'NaN/inf/-0/subnormal bits preserved');
  assert.deepEqual(tensors.get('2')!.shape, []);
  assert.deepEqual([...tensors.get('2')!.data], [7]);
  assert.equal(tensors.get('a.empty')!.data.length, 0);
  assert.deepEqual(readdirSync(dir), ['m.safetensors'], 'no temporary file left behind');
});

test('fp16 decoding of known bit patterns (normals, subnormals, inf, nan, -0)', () => {
  const cases: [number, number][] = [
    [0x3c00, 1], [0xc000, -2], [0x7bff, 65504], [0x3555, 0.333251953125], [0x0400, 2 ** -14],
    [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24], [0x8001, -(2 ** -24)], [0x7c00, Infinity], [0xfc00, -Infinity],
    [0x0000, 0],
  ];
  for (const [bits, value] of cases) assert.equal(f16BitsToNumber(bits), value, `0x${bits.toString(16)}`);
  assert.ok(Object.is(f16BitsToNumber(0x8000), -0));
  assert.ok(Number.isNaN(f16BitsToNumber(0x7e00)));
  assert.ok(Number.isNaN(f16BitsToNumber(0xfc01)));
  const out = new Float32Array(cases.length + 1);
  decodeF16(Uint16Array.from([...cases.map((c) => c[0]), 0x7e00]), out);
  assert.deepEqual([...out.subarray(0, cases.length)], cases.map((c) => Math.fround(c[1])));
  assert.ok(Number.isNaN(out[cases.length]));
});

test('bf16 decoding of known bit patterns and round-to-nearest-even encoding', () => {
  assert.equal(bf16BitsToNumber(0x3f80), 1);
  assert.equal(bf16BitsToNumber(0x4049), 3.140625);
  assert.equal(bf16BitsToNumber(0xc2f7), -123.5);
  assert.equal(bf16BitsToNumber(0x0001), Math.fround(2 ** -133), 'smallest subnormal');
  assert.equal(bf16BitsToNumber(0x7f80), Infinity);
  assert.equal(bf16BitsToNumber(0xff80), -Infinity);
  assert.ok(Number.isNaN(bf16BitsToNumber(0x7fc0)));
  assert.ok(Object.is(bf16BitsToNumber(0x8000), -0));
  const out = new Float32Array(3);
  decodeBF16(Uint16Array.from([0x3f80, 0x0001, 0xff80]), out);
  assert.deepEqual([...out], [1, Math.fround(2 ** -133), -Infinity]);

  const enc = new Uint16Array(8);
  const bits = Uint32Array.from([0x3f800000, 0x3f808000, 0x3f818000, 0x3f808001, 0x7f7fffff, 0x7f800000, 0x7f800001, 0x80000000]);
  encodeBF16(new Float32Array(bits.buffer), enc);
  // tie -> even (down), tie -> even (up), above tie -> up, overflow rounds to inf, NaN stays NaN (quiet)
  assert.deepEqual([...enc], [0x3f80, 0x3f80, 0x3f82, 0x3f81, 0x7f80, 0x7f80, 0x7fc0, 0x8000]);
});

test('reads F16, BF16, F64 tensors into Float32Array', () => {
  const dir = tmp();
  const f16 = Uint16Array.from([0x3c00, 0x0001, 0x7c00, 0xc000]);
  const bf16 = Uint16Array.from([0x3f80, 0x0001, 0xff80, 0x4049]);
  const f64 = Float64Array.from([0.1, -1e300, 1 + 2 ** -30]);
  const data = Buffer.concat([Buffer.from(f64.buffer), Buffer.from(f16.buffer), Buffer.from(bf16.buffer)]);
  const path = rawFile(join(dir, 'x.safetensors'), {
    d: { dtype: 'F64', shape: [3], data_offsets: [0, 24] },
    h: { dtype: 'F16', shape: [2, 2], data_offsets: [24, 32] },
    b: { dtype: 'BF16', shape: [4], data_offsets: [32, 40] },
  }, data);
  const f = SafetensorsFile.open(path);
  try {
    assert.deepEqual([...f.read('h')], [1, Math.fround(2 ** -24), Infinity, -2]);
    assert.deepEqual([...f.read('b')], [1, Math.fround(2 ** -133), -Infinity, 3.140625]);
    assert.deepEqual([...f.read('d')], [Math.fround(0.1), -Infinity, Math.fround(1 + 2 ** -30)]);
    assert.deepEqual(f.info('h').shape, [2, 2]);
    assert.equal(f.info('h').dtype, 'F16');
  } finally {
    f.close();
  }
});

test('BF16 writing stores rounded values that read back exactly', () => {
  const dir = tmp();
  const path = join(dir, 'b.safetensors');
  const src = new Float32Array(new Uint32Array([0x3f808000, 0x3f818000, 0x40490fdb]).buffer);
  writeSafetensors(path, [{ name: 'w', shape: [3], data: src }], { dtype: 'BF16' });
  const f = SafetensorsFile.open(path);
  try {
    assert.equal(f.info('w').dtype, 'BF16');
    assert.deepEqual(bitsOf(f.read('w')), [0x3f800000, 0x3f820000, 0x40490000]);
  } finally {
    f.close();
  }
});

test('rejects corrupt files, naming the file, the tensor and what was expected', () => {
  const dir = tmp();
  const p = (name: string) => join(dir, name);
  const expectOpen = (path: string, ...patterns: RegExp[]) => {
    assert.throws(() => SafetensorsFile.open(path), (e: Error) => {
      assert.ok(e.message.includes(path), `message names the file: ${e.message}`);
      for (const re of patterns) assert.match(e.message, re);
      return true;
    });
  };
  const four = new Uint8Array(16);

  writeFileSync(p('short'), Buffer.from([1, 2, 3]));
  expectOpen(p('short'), /too short/, /truncated/);

  const big = Buffer.alloc(16);
  big.writeBigUInt64LE(1000n);
  writeFileSync(p('beyond'), big);
  expectOpen(p('beyond'), /header length 1000 runs past the end of the 16-byte file/);

  const huge = Buffer.alloc(16);
  huge.writeBigUInt64LE(2n ** 62n);
  writeFileSync(p('huge'), huge);
  expectOpen(p('huge'), /exceeds/);

  expectOpen(rawFile(p('badjson'), null, four, '{"a": {"dtype": "F32",'), /not valid UTF-8 JSON/);
  expectOpen(rawFile(p('array'), [1, 2]), /must be a JSON object, got an array/);
  expectOpen(rawFile(p('dtype'), { w: { dtype: 'F17', shape: [4], data_offsets: [0, 16] } }, four), /tensor "w"/, /unknown dtype "F17"/);
  expectOpen(rawFile(p('shape'), { w: { dtype: 'F32', shape: [-4], data_offsets: [0, 16] } }, four), /tensor "w"/, /shape/);
  expectOpen(rawFile(p('offsets'), { w: { dtype: 'F32', shape: [4], data_offsets: [0] } }, four), /tensor "w"/, /data_offsets/);
  expectOpen(rawFile(p('reversed'), { w: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, four), /tensor "w"/, /end before begin/);
  expectOpen(rawFile(p('range'), { w: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }, four), /tensor "w"/, /past the end of the data section \(16 bytes/);
  expectOpen(rawFile(p('size'), { w: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 16] } }, four),
    /tensor "w"/, /16 bytes/, /F16 x shape \[2, 3\] needs 12/);
  expectOpen(rawFile(p('overlap'), {
    a: { dtype: 'F32', shape: [3], data_offsets: [0, 12] },
    b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
  }, four), /"a" \[0, 12\)/, /"b" \[8, 16\)/, /overlap/);
  expectOpen(rawFile(p('meta'), { __metadata__: { n: 3 } }), /"__metadata__"."n" must be a string/);
  expectOpen(rawFile(p('entry'), { w: 5 }), /tensor "w": expected \{dtype, shape, data_offsets\}/);

  // A file cut short after writing: the last tensor no longer fits.
  const cut = p('cut.safetensors');
  writeSafetensors(cut, [{ name: 'a', shape: [4], data: new Float32Array(4) }, { name: 'b', shape: [4], data: new Float32Array(4) }]);
  truncateSync(cut, readFileSync(cut).length - 3);
  expectOpen(cut, /tensor "b"/, /past the end/, /truncated/);

  // Integer tensors are valid files (old checkpoints store position_ids as I64) but not floats.
  const ints = rawFile(p('ints'), { ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, four);
  const f = SafetensorsFile.open(ints);
  try {
    assert.throws(() => f.read('ids'), /tensor "ids" has dtype I64/);
    assert.throws(() => f.read('nope'), /no tensor "nope"/);
  } finally {
    f.close();
  }
});

test('reads one tensor without touching the rest of a 3 GB file', () => {
  const dir = tmp();
  const path = join(dir, 'big.safetensors');
  const header = { small: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, big: { dtype: 'F32', shape: [750_000_000], data_offsets: [8, 3_000_000_008] } };
  rawFile(path, header, new Uint8Array(new Float32Array([1.5, -2]).buffer));
  // Sparse extension: the size is real, the bytes are never allocated or read.
  truncateSync(path, readFileSync(path).length + 3_000_000_000);
  const f = SafetensorsFile.open(path);
  try {
    assert.deepEqual([...f.read('small')], [1.5, -2]);
    assert.deepEqual(f.info('big').shape, [750_000_000]);
  } finally {
    f.close();
  }
});

test('writing is atomic: a failure leaves the previous file and no temporary', () => {
  const dir = tmp();
  const path = join(dir, 'w.safetensors');
  writeSafetensors(path, [{ name: 'x', shape: [1], data: new Float32Array([1]) }]);
  const before = readFileSync(path);
  assert.throws(() => writeSafetensors(path, [
    { name: 'a', shape: [1], data: new Float32Array([2]) },
    { name: 'b', shape: [1], data: () => { throw new Error('engine died'); } },
  ]), /engine died/);
  assert.deepEqual(readFileSync(path), before);
  assert.throws(() => writeSafetensors(path, [{ name: 'a', shape: [2, 2], data: new Float32Array(3) }]),
    /tensor "a" has 3 values but shape \[2, 2\] needs 4/);
  assert.throws(() => writeSafetensors(path, [{ name: 'a', shape: [1], data: new Float32Array(1) }, { name: 'a', shape: [1], data: new Float32Array(1) }]),
    /"a" given twice/);
  assert.deepEqual(readFileSync(path), before);
  assert.deepEqual(readdirSync(dir), ['w.safetensors']);
});

test('interop with the reference safetensors implementation', (t) => {
  if (!PYTHON) { t.skip(SKIP_REASON); return; }
  const dir = tmp();
  // Reference-written -> our reader (dtype conversion must match torch's .float() bit for bit).
  const made = runPython<{ file: string; tensors: Record<string, { shape: number[]; bits: number[] }> }>('safetensors-make', dir);
  const f = SafetensorsFile.open(made.file);
  try {
    assert.deepEqual(f.metadata, { format: 'pt', who: 'reference' });
    assert.deepEqual(f.names().sort(), Object.keys(made.tensors).sort());
    for (const [name, exp] of Object.entries(made.tensors)) {
      assert.deepEqual(f.info(name).shape, exp.shape, name);
      const got = bitsOf(f.read(name));
      // NaN payloads may differ between conversions; any NaN must read as NaN.
      const isNaNBits = (b: number) => (b & 0x7fffffff) > 0x7f800000;
      assert.deepEqual(got.map((b) => (isNaNBits(b) ? 'nan' : b)), exp.bits.map((b) => (isNaNBits(b) ? 'nan' : b)), name);
    }
  } finally {
    f.close();
  }
  // Ours -> the reference reader (which validates strictly), F32 and BF16.
  const values = new Float32Array([1, -2.5, 3.14159, 1e-40, Infinity, 0x7fffff, 1 / 3, -0]);
  for (const dtype of ['F32', 'BF16'] as const) {
    const path = join(dir, `ours-${dtype}.safetensors`);
    writeSafetensors(path, [
      { name: 'm', shape: [2, 4], data: values },
      { name: 'b', shape: [3], data: new Float32Array([0.5, 0.25, 0.125]) },
    ], { metadata: { format: 'pt', k: 'v' }, dtype });
    const seen = runPython<{ metadata: Record<string, string>; tensors: Record<string, { dtype: string; shape: number[]; bits: number[] }> }>('safetensors-read', path);
    assert.deepEqual(seen.metadata, { format: 'pt', k: 'v' });
    assert.equal(seen.tensors.m.dtype, dtype === 'F32' ? 'torch.float32' : 'torch.bfloat16');
    assert.deepEqual(seen.tensors.m.shape, [2, 4]);
    const expected = dtype === 'F32' ? values : (() => {
      const h = new Uint16Array(values.length);
      encodeBF16(values, h);
      const out = new Float32Array(values.length);
      decodeBF16(h, out);
      return out;
    })();
    assert.deepEqual(seen.tensors.m.bits, bitsOf(expected), dtype);
    assert.deepEqual(seen.tensors.b.bits, [0.5, 0.25, 0.125].map(f32Bits));
  }
});

test('missing file is an error naming it', () => {
  const path = join(tmp(), 'absent.safetensors');
  assert.throws(() => SafetensorsFile.open(path), (e: Error) => e.message.includes('absent.safetensors'));
  assert.equal(existsSync(path), false);
});
