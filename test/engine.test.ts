// Engine behaviour through the N-API surface: gradient caching equals one big batch, determinism,
// freezing, bf16 against fp32, and a clear error (never a crash) for every kind of bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native, type NativeModel, type NativeModelConfig, type TokenBatch } from '../src/native.ts';
import { concatBatches } from '../src/encoder.ts';
import { randomBatch } from './helpers/random-tokens.ts';

const cfg: NativeModelConfig = {
  arch: 'roberta', vocabSize: 50, hiddenSize: 32, numLayers: 2, numHeads: 4, intermediateSize: 64, maxPositions: 24,
  typeVocabSize: 1, layerNormEps: 1e-5, padTokenId: 1, hiddenDropout: 0.1, attentionDropout: 0.1, pooling: 'mean',
  hasPooler: false, normalize: true, seed: 7,
};

// Roberta ids: <s> = 0, </s> = 2, words from [3, 50).
const batch = (n: number, seed: number): TokenBatch => randomBatch(n, seed, { bos: 0, eos: 2, minWords: 2, maxWords: 13, lo: 3, hi: 50 });

function slice(b: TokenBatch, from: number, to: number): TokenBatch {
  let t0 = 0;
  for (let i = 0; i < from; i++) t0 += b.lengths[i];
  let t1 = t0;
  for (let i = from; i < to; i++) t1 += b.lengths[i];
  return {
    ids: b.ids.slice(t0, t1), lengths: b.lengths.slice(from, to),
    seqIds: b.seqIds ? b.seqIds.slice(from, to) : Uint32Array.from({ length: to - from }, (_, k) => from + k),
  };
}

function relErr(a: Float32Array, b: Float32Array): number {
  let d = 0, n = 0;
  for (let i = 0; i < a.length; i++) (d += (a[i] - b[i]) ** 2), (n += b[i] ** 2);
  return Math.sqrt(d / Math.max(n, 1e-30));
}

function allGrads(m: NativeModel): Float32Array {
  const ps = m.parameters();
  const out = new Float32Array(m.numParameters);
  for (const p of ps) out.set(m.getGradient(p.name), p.offset);
  return out;
}

async function lossGrad(emb: Float32Array, nq: number, D: number) {
  const r = native().infonce(emb.subarray(0, nq * D), emb.subarray(nq * D), nq, D, { scale: 20, symmetric: true });
  const g = new Float32Array(emb.length);
  g.set(r.gradQueries);
  g.set(r.gradPassages, nq * D);
  return { loss: r.loss, g };
}

test('gradient caching: sub-batches replayed with the same dropout give the gradients of one big batch', async () => {
  const m = new (native().Model)(cfg);
  const D = m.embeddingDim, nq = 6;
  const full = concatBatches(batch(nq, 1), batch(nq + 2, 2));  // 6 queries, 6 positives, 2 hard negatives
  const n = full.lengths.length;
  full.seqIds = Uint32Array.from({ length: n }, (_, i) => i);
  // One big batch.
  m.zeroGrad();
  const emb = await m.forward(full, { dropoutSeed: 11 });
  const { loss, g } = await lossGrad(emb, nq, D);
  await m.backward(g);
  const big = allGrads(m);
  // GradCache: embeddings of 3 sub-batches without activations, loss once, then replay each.
  const cuts = [0, 5, 9, n];
  const parts: Float32Array[] = [];
  for (let k = 0; k < 3; k++) parts.push(await m.forward(slice(full, cuts[k], cuts[k + 1]), { dropoutSeed: 11, keepActivations: false }));
  const cached = new Float32Array(emb.length);
  parts.forEach((p, k) => cached.set(p, cuts[k] * D));
  assert.ok(relErr(cached, emb) < 1e-6, 'sub-batch embeddings differ from the big batch (dropout not replayed?)');
  const lg = await lossGrad(cached, nq, D);
  assert.ok(Math.abs(lg.loss - loss) < 1e-6 * Math.abs(loss));
  m.zeroGrad();
  for (let k = 0; k < 3; k++) {
    await m.forward(slice(full, cuts[k], cuts[k + 1]), { dropoutSeed: 11 });
    await m.backward(lg.g.slice(cuts[k] * D, cuts[k + 1] * D));
  }
  const e = relErr(allGrads(m), big);
  // Only the summation order of the products changes with the sub-batch shape: fp32 rounding.
  assert.ok(e < 1e-5, `gradients with caching differ from one big batch: relative error ${e}`);
  // And dropout really is on: another seed changes the embeddings.
  const other = await m.forward(full, { dropoutSeed: 12, keepActivations: false });
  assert.ok(relErr(other, emb) > 1e-3, 'dropout seed has no effect');
  m.dispose();
});

test('same seed, same model and same steps; frozen parameters do not move', async () => {
  const run = async (freeze: boolean) => {
    const m = new (native().Model)(cfg);
    if (freeze) m.setFrozen({ freezeWordEmbeddings: true, freezeLayers: 1 });
    const opt = new (native().AdamW)(m, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 });
    const b = concatBatches(batch(4, 3), batch(4, 4));
    const losses: number[] = [];
    for (let s = 0; s < 3; s++) {
      m.zeroGrad();
      const emb = await m.forward(b, { dropoutSeed: s });
      const { loss, g } = await lossGrad(emb, 4, m.embeddingDim);
      losses.push(loss);
      await m.backward(g);
      await opt.step(1e-3);
    }
    return { m, losses };
  };
  const a = await run(false), b = await run(false);
  assert.deepEqual(a.losses, b.losses);
  for (const p of a.m.parameters()) assert.deepEqual(a.m.getParameter(p.name), b.m.getParameter(p.name), p.name);
  const init = new (native().Model)(cfg);
  const f = await run(true);
  for (const p of f.m.parameters()) {
    const frozen = p.name === 'embeddings.word_embeddings.weight' || p.name.startsWith('encoder.layer.0.');
    assert.equal(p.trainable, !frozen, p.name);
    const same = relErr(f.m.getParameter(p.name), init.getParameter(p.name)) === 0;
    assert.equal(same, frozen, `${p.name}: ${frozen ? 'frozen but moved' : 'trainable but did not move'}`);
    if (frozen) assert.ok(f.m.getGradient(p.name).every((x) => x === 0), `${p.name}: frozen but has a gradient`);
  }
  for (const m of [a.m, b.m, f.m, init]) m.dispose();
});

test('bf16 products track fp32: embeddings and gradients', async () => {
  const m = new (native().Model)({ ...cfg, hiddenDropout: 0, attentionDropout: 0 });
  const b = concatBatches(batch(4, 5), batch(4, 6));
  const grads = async () => {
    m.zeroGrad();
    const emb = await m.forward(b, { dropoutSeed: 0 });
    await m.backward((await lossGrad(emb, 4, m.embeddingDim)).g);
    return { emb, g: allGrads(m) };
  };
  const f = await grads();
  m.setPrecision('bf16');
  const h = await grads();
  // 8-bit significands in every product input, 2 layers: ~1e-2 on activations; gradients pass
  // through twice as many products: 5e-2.
  const ee = relErr(h.emb, f.emb), eg = relErr(h.g, f.g);
  assert.ok(ee < 2e-2 && ee > 0, `bf16 embeddings: relative error ${ee}`);
  assert.ok(eg < 5e-2 && eg > 0, `bf16 gradients: relative error ${eg}`);
  m.dispose();
});

// The bf16 path keeps bf16 copies of the layers' weights between forwards and redoes them only
// after the weights change; a stale copy would make a model compute with its old weights.
test('bf16 weight copies follow the weights: after an AdamW step and after setParameter, a bf16 model equals a fresh one with the same weights', async () => {
  const nat = native();
  const m = new nat.Model({ ...cfg, hiddenDropout: 0, attentionDropout: 0 });
  m.setPrecision('bf16');
  const b = concatBatches(batch(4, 5), batch(4, 6));
  const fresh = async () => {
    const f = new nat.Model({ ...cfg, hiddenDropout: 0, attentionDropout: 0, seed: 99 });
    for (const p of m.parameters()) f.setParameter(p.name, m.getParameter(p.name), p.shape);
    f.setPrecision('bf16');
    const e = await f.encode(b);
    f.dispose();
    return e;
  };
  const e0 = await m.encode(b);
  assert.deepEqual(await m.encode(b), e0, 'a second encode with unchanged weights reuses the copies and gives the same');
  const opt = new nat.AdamW(m, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 0 });
  m.zeroGrad();
  const emb = await m.forward(b, { dropoutSeed: 0 });
  await m.backward((await lossGrad(emb, 4, m.embeddingDim)).g);
  await opt.step(1e-2);
  const e1 = await m.encode(b);
  assert.notDeepEqual(e1, e0, 'the step changed the embeddings');
  assert.deepEqual(e1, await fresh(), 'after an AdamW step');
  const w = m.getParameter('encoder.layer.0.intermediate.dense.weight');
  m.setParameter('encoder.layer.0.intermediate.dense.weight', w.map((x) => -x), m.parameters().find((p) => p.name === 'encoder.layer.0.intermediate.dense.weight')!.shape);
  const e2 = await m.encode(b);
  assert.notDeepEqual(e2, e1, 'setParameter changed the embeddings');
  assert.deepEqual(e2, await fresh(), 'after setParameter');
  m.dispose();
});

test('bad input gives a clear error, never a crash', async () => {
  const m = new (native().Model)(cfg);
  const ok = batch(2, 9);
  await assert.rejects(m.encode({ ids: Int32Array.from([0, 60, 2]), lengths: Int32Array.from([3]) }),
    /token id 60 at position 1 of sequence 0 is outside the vocabulary \[0, 50\)/);
  await assert.rejects(m.encode({ ids: new Int32Array(0), lengths: new Int32Array(0) }), /empty batch/);
  await assert.rejects(m.encode({ ids: new Int32Array(30).fill(5), lengths: Int32Array.from([30]) }),
    /sequence 0 has 30 tokens but the position table allows at most 22/);
  await assert.rejects(m.encode({ ids: Int32Array.from([0, 2]), lengths: Int32Array.from([2, 0]) }), /sequence 1 of the batch is empty/);
  await assert.rejects(m.encode({ ids: Int32Array.from([0, 5, 2]), lengths: Int32Array.from([2]) }), /add up to 2 tokens but ids holds 3/);
  await assert.rejects(m.encode({ ids: Int32Array.from([0, 5, 2]), lengths: Int32Array.from([3]), typeIds: Int32Array.from([0, 1, 0]) }),
    /token type id 1 at position 1 of sequence 0 is outside \[0, 1\)/);
  assert.throws(() => m.encode({ ids: Float32Array.from([0, 5]) as unknown as Int32Array, lengths: Int32Array.from([2]) }),
    /batch.ids must be a Int32Array/);
  assert.throws(() => m.backward(new Float32Array(3)), /gradEmbeddings has 3 values/);
  await assert.rejects(async () => {
    await m.encode(ok);
    await m.backward(new Float32Array(2 * m.embeddingDim));
  }, /backward\(\) needs a training forward\(\) first/);
  const p = m.encode(ok);
  assert.throws(() => m.encode(ok), /model is busy/);
  await p;
  assert.throws(() => m.setParameter('embeddings.LayerNorm.weight', new Float32Array(31), [31]),
    /tensor 'embeddings.LayerNorm.weight' has shape \[31\] but the model expects \[32\]/);
  assert.throws(() => m.getParameter('nope'), /model has no parameter named 'nope'/);
  assert.throws(() => new (native().Model)({ ...cfg, numHeads: 5 }), /hidden size 32 is not divisible by the number of heads 5/);
  assert.throws(() => new (native().Model)({ ...cfg, hiddenSize: undefined } as unknown as NativeModelConfig),
    /model config: field 'hiddenSize' must be a number/);
  assert.throws(() => native().infonce(new Float32Array(6), new Float32Array(3), 2, 3, { scale: 20, symmetric: false }),
    /at least as many passages as queries/);
  m.dispose();
  assert.throws(() => m.encode(ok), /disposed/);
});
