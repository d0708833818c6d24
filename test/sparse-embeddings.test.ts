// Row-sparse AdamW of the word-embedding matrix (AdamW option sparseEmbeddings) and the touched-row
// bookkeeping it rests on (native/model.h touched_word_rows): zeroGrad clears only the rows that
// batches touched, the gradient norm reads only those rows, and the sparse update differs from the
// exact dense one only where the documented semantics say it does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Encoder } from '../src/encoder.ts';
import { ContrastiveTrainer, type StepInput } from '../src/trainer.ts';
import type { NativeModelConfig } from '../src/native.ts';
import { packBatch } from './helpers/random-tokens.ts';

const V = 40, H = 16;
const cfg: NativeModelConfig = {
  arch: 'roberta', vocabSize: V, hiddenSize: H, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 48,
  typeVocabSize: 1, layerNormEps: 1e-5, padTokenId: 1, hiddenDropout: 0.1, attentionDropout: 0.1, pooling: 'mean',
  hasPooler: false, normalize: true, seed: 11,
};
const WORD = 'embeddings.word_embeddings.weight';
const optim = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1.0 };
const loss = { scale: 20, symmetric: false };

// Four queries and four passages built from the given word ids (<s> = 0, </s> = 2 around them).
function input(words: number[]): StepInput {
  const seqs = Array.from({ length: 8 }, (_, i) => [0, ...words.filter((_, k) => k % 8 === i), 2]);
  return { queries: packBatch(seqs.slice(0, 4)), passages: packBatch(seqs.slice(4)) };
}
const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
const rowsOf = (inp: StepInput) => new Set([...inp.queries.ids, ...inp.passages.ids]);

function pair() {
  const dense = Encoder.create(cfg), sparse = Encoder.create(cfg);
  return {
    dense, sparse,
    td: new ContrastiveTrainer(dense, optim, loss), ts: new ContrastiveTrainer(sparse, { ...optim, sparseEmbeddings: true }, loss),
  };
}

function row(w: Float32Array, r: number) { return Array.from(w.subarray(r * H, (r + 1) * H)); }

test('sparse embedding update equals the dense one bit for bit when every row is touched', async () => {
  const { dense, sparse, td, ts } = pair();
  // Every id 0..V-1 in each batch (id 1 = padding is a word here too: it is just a row).
  for (let s = 0; s < 3; s++) {
    const inp = input([...range(3, V), 1, ...range(3, 12)]);
    const a = await td.step(inp, 1e-2, 100 + s), b = await ts.step(inp, 1e-2, 100 + s);
    assert.equal(a.loss, b.loss, `step ${s}: loss`);
    assert.equal(a.gradNorm, b.gradNorm, `step ${s}: gradient norm`);
  }
  for (const p of dense.model.parameters()) {
    assert.deepEqual(sparse.model.getParameter(p.name), dense.model.getParameter(p.name), `${p.name} after 3 steps`);
  }
  const sd = td.optimizer.getState(), ss = ts.optimizer.getState();
  assert.deepEqual(ss.m, sd.m, 'first moments');
  assert.deepEqual(ss.v, sd.v, 'second moments');
});

test('sparse update leaves untouched rows (weights and moments) exactly as they were; the dense one moves them', async () => {
  const { dense, sparse, td, ts } = pair();
  const w0 = dense.model.getParameter(WORD);
  const a = input(range(3, 23)), b = input(range(13, 33));  // rows 3..22, then 13..32
  const ra = rowsOf(a), rb = rowsOf(b);
  const s1d = await td.step(a, 1e-2, 1), s1s = await ts.step(a, 1e-2, 1);
  assert.equal(s1s.gradNorm, s1d.gradNorm, 'the gradient norm does not depend on the mode');
  const w1d = dense.model.getParameter(WORD), w1s = sparse.model.getParameter(WORD);
  for (let r = 0; r < V; r++) {
    if (ra.has(r)) {
      // Step 1 from zero moments: a touched row gets the same update in both modes.
      assert.deepEqual(row(w1s, r), row(w1d, r), `touched row ${r} after step 1`);
    } else {
      assert.deepEqual(row(w1s, r), row(w0, r), `untouched row ${r}: sparse leaves it`);
      if (row(w0, r).some((x) => x !== 0)) assert.notDeepEqual(row(w1d, r), row(w0, r), `untouched row ${r}: dense decays it`);
    }
  }
  await td.step(b, 1e-2, 2);
  await ts.step(b, 1e-2, 2);
  const w2d = dense.model.getParameter(WORD), w2s = sparse.model.getParameter(WORD);
  const st = ts.optimizer.getState(), word = sparse.model.parameters().find((p) => p.name === WORD)!;
  let movedByMomentum = 0;
  for (const r of ra) {
    if (rb.has(r)) continue;
    // Touched in step 1 only: sparse keeps it and its moments from step 1; dense moves it by momentum.
    assert.deepEqual(row(w2s, r), row(w1s, r), `row ${r} (step 1 only): sparse leaves it in step 2`);
    if (row(w2d, r).some((x, i) => x !== row(w1d, r)[i])) movedByMomentum++;
  }
  assert.ok(movedByMomentum > 0, 'the dense update moved rows touched only in step 1');
  for (let r = 0; r < V; r++) {
    if (ra.has(r) || rb.has(r)) continue;
    const o = word.offset + r * H;
    assert.ok(st.m.subarray(o, o + H).every((x) => x === 0) && st.v.subarray(o, o + H).every((x) => x === 0), `row ${r}: moments untouched`);
  }
});

test('zeroGrad clears every row an earlier batch touched; gradients land only on the batch\'s rows', async () => {
  const { dense, td } = pair();
  const a = input(range(3, 23)), b = input(range(13, 33));
  await td.step(a, 1e-2, 1);
  dense.model.zeroGrad();
  await td.accumulate(b, 2);
  const g = dense.model.getGradient(WORD), rb = rowsOf(b);
  for (let r = 0; r < V; r++) {
    const nonzero = row(g, r).some((x) => x !== 0);
    if (!rb.has(r)) assert.ok(!nonzero, `row ${r} is not in the batch: its gradient must be zero after zeroGrad`);
  }
  assert.ok([...rb].some((r) => row(g, r).some((x) => x !== 0)), 'the batch\'s rows have gradients');
  // Gradient accumulation over two batches without zeroGrad keeps both sets of rows (and zeroGrad then clears both).
  await td.accumulate(a, 3);
  const g2 = dense.model.getGradient(WORD);
  assert.ok([...rowsOf(a)].filter((r) => !rb.has(r) && r !== 0 && r !== 2).some((r) => row(g2, r).some((x) => x !== 0)), 'rows of the second batch accumulate');
  dense.model.zeroGrad();
  assert.ok(dense.model.getGradient(WORD).every((x) => x === 0), 'all zero after zeroGrad');
  for (const p of dense.model.parameters()) assert.ok(dense.model.getGradient(p.name).every((x) => x === 0), `${p.name} zero`);
});

test('sparseEmbeddings must be a boolean', () => {
  const enc = Encoder.create(cfg);
  assert.throws(() => new ContrastiveTrainer(enc, { ...optim, sparseEmbeddings: 'yes' as unknown as boolean }, loss),
    /sparseEmbeddings' must be a boolean/);
});
