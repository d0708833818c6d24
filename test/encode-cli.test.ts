// `xlir encode` end to end: a model folder with a tokenizer.json (mBERT's WordPiece vocabulary
// from ../shared), multilingual text from XQuAD-R, the .npy it writes, checked against
// sentence-transformers encoding the same texts from the same folder; and its bad-input errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Encoder } from '../src/encoder.ts';
import { buildWordPieceTokenizerJson } from '../src/tokenizer.ts';
import { readNpy } from '../src/npy.ts';
import { native } from '../src/native.ts';

const shared = fileURLToPath(new URL('../../shared', import.meta.url));
const vocab = join(shared, 'data/tokenizers/mbert-cased-wordpiece/mbert_modified_vocab.txt');
const cli = fileURLToPath(new URL('../bin/xlir.mjs', import.meta.url));
const PY = process.env.XLIR_PYTHON;

// Euclidean distance between row i of two [rows, dim] arrays, for every row.
function rowDistances(a: Float32Array, b: Float32Array, dim: number): number[] {
  return Array.from({ length: a.length / dim }, (_, i) => Math.hypot(...a.subarray(i * dim, (i + 1) * dim).map((x, k) => x - b[i * dim + k])));
}

function xlir(args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
}

// Questions and one long context from several scripts of XQuAD-R.
function texts(): string[] {
  const out: string[] = [];
  for (const lang of ['en', 'zh', 'th', 'hi', 'ar', 'ru', 'el']) {
    const d = JSON.parse(readFileSync(join(shared, 'data/xquad-r', `${lang}.json`), 'utf8'));
    const para = d.data[0].paragraphs[0];
    out.push(para.qas[0].question, para.qas[1].question);
    if (lang === 'en') out.push(para.context);  // longer than --max-length: truncated
  }
  return out;
}

test('xlir encode writes the embeddings sentence-transformers computes', { skip: existsSync(vocab) ? false : `${shared} missing: skipped` }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-encode-'));
  const tokPath = join(dir, 'tokenizer.json');
  writeFileSync(tokPath, JSON.stringify(buildWordPieceTokenizerJson(vocab, { lowercase: false })));
  const enc = Encoder.create({
    arch: 'bert', vocabSize: 119547, hiddenSize: 32, numLayers: 2, numHeads: 4, intermediateSize: 64, maxPositions: 128,
    typeVocabSize: 2, layerNormEps: 1e-12, padTokenId: 0, hiddenDropout: 0.1, attentionDropout: 0.1, pooling: 'mean',
    hasPooler: true, normalize: true, seed: 5,
  }, { tokenizerPath: tokPath });
  const model = join(dir, 'model');
  enc.save(model);
  const inputs = texts();
  const input = join(dir, 'in.jsonl');
  writeFileSync(input, inputs.map((text, i) => JSON.stringify({ id: i, text })).join('\n') + '\n');
  const out = join(dir, 'out.npy');
  const r = xlir(['encode', '--model', model, '--input', input, '--output', out, '--max-length', '48', '--prefix', 'Query: ', '--batch-size', '4']);
  assert.equal(r.status, 0, r.stderr);
  const { shape, data } = readNpy(out);
  assert.deepEqual(shape, [inputs.length, 32]);
  // In-process API gives the same bytes (same engine, same batches modulo batch size).
  const direct = await enc.encodeTexts(inputs, { maxLength: 48, prefix: 'Query: ' });
  for (let i = 0; i < data.length; i++) assert.ok(Math.abs(data[i] - direct[i]) < 1e-6, `row ${Math.floor(i / 32)} differs`);
  for (let i = 0; i < inputs.length; i++) {
    const n = Math.hypot(...data.subarray(i * 32, i * 32 + 32));
    assert.ok(Math.abs(n - 1) < 1e-5, `row ${i} is not unit length (${n})`);
  }
  enc.dispose();

  await t.test('equals sentence-transformers on the same folder', { skip: PY ? false : 'XLIR_PYTHON not set' }, () => {
    const tj = join(dir, 'texts.json'), ref = join(dir, 'ref.npy');
    writeFileSync(tj, JSON.stringify(inputs));
    const p = spawnSync(PY!, [fileURLToPath(new URL('./reference/st_encode.py', import.meta.url)), model, tj, '48', 'Query: ', ref],
      { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' } });
    assert.equal(p.status, 0, p.stderr);
    const want = readNpy(ref);
    assert.deepEqual(want.shape, shape);
    // fp32 on both sides, summation order differs: 1e-5 relative per row (see parity.test.ts).
    rowDistances(data, want.data, 32).forEach((d, i) =>
      assert.ok(d < 1e-5, `text ${i} (${JSON.stringify(inputs[i].slice(0, 40))}): distance ${d} from sentence-transformers`));
  });

  // On CUDA (a GPU, or the emulated addon that test/cuda-emu.test.ts loads through XLIR_ADDON):
  // the same embeddings from --device cuda:0, to the CUDA forward tolerance of device.test.ts.
  const cuda = native().info();
  await t.test('--device cuda:0 writes the CPU\'s embeddings', { skip: cuda.cuda ? false : `no CUDA (${cuda.cudaReason})` }, () => {
    const gpuOut = join(dir, 'gpu.npy');
    const g = xlir(['encode', '--model', model, '--input', input, '--output', gpuOut, '--max-length', '48', '--prefix', 'Query: ',
      '--batch-size', '4', '--device', 'cuda:0']);
    assert.equal(g.status, 0, g.stderr);
    const got = readNpy(gpuOut);
    assert.deepEqual(got.shape, shape);
    rowDistances(data, got.data, 32).forEach((d, i) => assert.ok(d < 1e-5, `text ${i}: distance ${d} between cuda:0 and the CPU`));
  });

  await t.test('bad input names the file and line', () => {
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"text": "fine"}\n{"text": broken\n');
    let e = xlir(['encode', '--model', model, '--input', bad, '--output', join(dir, 'x.npy')]);
    assert.notEqual(e.status, 0);
    assert.match(e.stderr, /bad\.jsonl:2: not valid JSON/);
    assert.ok(!existsSync(join(dir, 'x.npy')), 'a failed run must not leave an output file');
    writeFileSync(bad, '{"text": "fine"}\n{"txt": "no text"}\n');
    e = xlir(['encode', '--model', model, '--input', bad, '--output', join(dir, 'x.npy')]);
    assert.match(e.stderr, /bad\.jsonl:2: expected a string field "text"/);
    e = xlir(['encode', '--model', join(dir, 'nowhere'), '--input', input, '--output', join(dir, 'x.npy')]);
    assert.match(e.stderr, /nowhere.*not a directory/);
    // a device this machine does not have, whether it has no GPU or one
    e = xlir(['encode', '--model', model, '--input', input, '--output', join(dir, 'x.npy'), '--device', 'cuda:7']);
    assert.notEqual(e.status, 0);
    assert.match(e.stderr, /cuda:7.*requested but (CUDA is unavailable|only \d+ CUDA device)/);
    // an output folder that cannot exist (a file is in its way) is named before any encoding
    e = xlir(['encode', '--model', model, '--input', input, '--output', join(dir, 'bad.jsonl', 'x.npy')]);
    assert.notEqual(e.status, 0);
    assert.match(e.stderr, /--output .*bad\.jsonl[/\\]x\.npy: cannot write in .*\(E(NOTDIR|EXIST)\)/);
    assert.doesNotMatch(e.stderr, /encode: wrote|texts/);
    e = xlir(['encode', '--model', model, '--input', input, '--output', dir]);
    assert.match(e.stderr, /--output .*: is a folder; give the file to write/);
    // a folder that does not exist yet is made
    e = xlir(['encode', '--model', model, '--input', input, '--output', join(dir, 'new', 'sub', 'x.npy'), '--max-length', '16']);
    assert.equal(e.status, 0, e.stderr);
    assert.ok(existsSync(join(dir, 'new', 'sub', 'x.npy')));
  });
});
