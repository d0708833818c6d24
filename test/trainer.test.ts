// The training step: gradient caching (any sub-batch size) gives the gradients of one full batch,
// with dropout on, hard negatives and the alignment term; and the step's loss falls when repeated.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Encoder } from '../src/encoder.ts';
import { ContrastiveTrainer, type StepInput } from '../src/trainer.ts';
import type { NativeModelConfig, TokenBatch } from '../src/native.ts';
import { randomBatch } from './helpers/random-tokens.ts';

const cfg: NativeModelConfig = {
  arch: 'bert', vocabSize: 60, hiddenSize: 32, numLayers: 2, numHeads: 4, intermediateSize: 64, maxPositions: 32,
  typeVocabSize: 2, layerNormEps: 1e-12, padTokenId: 0, hiddenDropout: 0.1, attentionDropout: 0.1, pooling: 'cls',
  hasPooler: true, normalize: true, seed: 3,
};

// BERT ids: [CLS] = 2, [SEP] = 3, words from [4, 60).
const seqs = (n: number, seed: number): TokenBatch => randomBatch(n, seed, { bos: 2, eos: 3, minWords: 1, maxWords: 14, lo: 4, hi: 60 });

const optim = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 0 };
const input: StepInput = { queries: seqs(5, 1), passages: seqs(8, 2), alignA: seqs(4, 3), alignB: seqs(4, 4) };

async function gradients(sub: number) {
  const enc = Encoder.create(cfg);
  const tr = new ContrastiveTrainer(enc, optim, { scale: 20, symmetric: true, alignmentWeight: 0.5 }, sub);
  enc.model.zeroGrad();
  const r = await tr.accumulate(input, 42);
  const g = new Float32Array(enc.model.numParameters);
  for (const p of enc.model.parameters()) g.set(enc.model.getGradient(p.name), p.offset);
  enc.dispose();
  return { r, g };
}

test('gradient caching equals one full batch, for every sub-batch size', async () => {
  const full = await gradients(0);
  assert.ok(full.r.alignmentLoss > 0 && full.r.retrievalLoss > 0);
  for (const sub of [1, 4, 7, 20]) {
    const c = await gradients(sub);
    assert.ok(Math.abs(c.r.loss - full.r.loss) <= 1e-6 * full.r.loss, `sub-batch ${sub}: loss ${c.r.loss} vs ${full.r.loss}`);
    let d = 0, n = 0;
    for (let i = 0; i < c.g.length; i++) (d += (c.g[i] - full.g[i]) ** 2), (n += full.g[i] ** 2);
    // Only the summation order of the matrix products changes with the sub-batch shape.
    assert.ok(Math.sqrt(d / n) < 1e-5, `sub-batch ${sub}: gradient relative error ${Math.sqrt(d / n)}`);
  }
});

test('repeated steps on one batch lower its loss; evaluate() is deterministic', async () => {
  const enc = Encoder.create({ ...cfg, pooling: 'mean' });
  const tr = new ContrastiveTrainer(enc, { ...optim, maxGradNorm: 1 }, { scale: 20, symmetric: false }, 6);
  const first = await tr.evaluate(input);
  assert.equal((await tr.evaluate(input)).loss, first.loss);
  for (let s = 0; s < 15; s++) await tr.step(input, 2e-3, s);
  const last = await tr.evaluate(input);
  assert.ok(last.loss < 0.5 * first.loss, `validation loss ${first.loss} -> ${last.loss}`);
  enc.dispose();
});
