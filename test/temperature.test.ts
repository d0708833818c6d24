// The learnable temperature (src/temperature.ts): its gradient against finite differences of an
// independent float64 InfoNCE, its Adam step against torch.optim.AdamW, the clamp, its options.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Encoder } from '../src/encoder.ts';
import { ContrastiveTrainer } from '../src/trainer.ts';
import { LearnedScale, MAX_LOG_SCALE, logScaleGradient } from '../src/temperature.ts';
import { definingConfigs, parseTrainArgs } from '../src/train-config.ts';
import { mulberry32 } from '../src/rng.ts';
import type { NativeModelConfig } from '../src/native.ts';

const cfg: NativeModelConfig = {
  arch: 'bert', vocabSize: 40, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 16,
  typeVocabSize: 2, layerNormEps: 1e-12, padTokenId: 0, hiddenDropout: 0, attentionDropout: 0, pooling: 'cls',
  hasPooler: false, normalize: true, seed: 1,
};

/** n unit vectors of dimension D; the first `pairs` of `b` are noisy copies of `a`'s (so positives score high). */
function unitRows(n: number, D: number, seed: number, near?: Float32Array, pairs = 0): Float32Array {
  const r = mulberry32(seed), x = new Float32Array(n * D);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let d = 0; d < D; d++) {
      const v = (r() - 0.5) + (near && i < pairs ? 1.5 * near[i * D + d] : 0);
      x[i * D + d] = v;
      s += v * v;
    }
    for (let d = 0; d < D; d++) x[i * D + d] /= Math.sqrt(s);
  }
  return x;
}

/** InfoNCE in float64, written from METHOD.md section 2 independently of native/infonce.cc. */
function infonce64(q: Float32Array, p: Float32Array, nq: number, D: number, scale: number, symmetric: boolean): number {
  const np = p.length / D;
  const logit = (i: number, j: number) => {
    let s = 0;
    for (let d = 0; d < D; d++) s += q[i * D + d] * p[j * D + d];
    return scale * s;
  };
  const ce = (row: number[], label: number) => {
    const mx = Math.max(...row);
    return mx + Math.log(row.reduce((s, v) => s + Math.exp(v - mx), 0)) - row[label];
  };
  let lq = 0;
  for (let i = 0; i < nq; i++) lq += ce(Array.from({ length: np }, (_, j) => logit(i, j)), i);
  lq /= nq;
  if (!symmetric) return lq;
  let lp = 0;
  for (let j = 0; j < nq; j++) lp += ce(Array.from({ length: nq }, (_, i) => logit(i, j)), j);
  return (lq + lp / nq) / 2;
}

test('d loss / d ln(scale) equals finite differences of a float64 InfoNCE (symmetric, hard negatives, alignment)', () => {
  const enc = Encoder.create(cfg);
  const D = enc.embeddingDim;
  const nq = 6, np = 9, na = 4, w = 0.3;
  for (const symmetric of [false, true])
    for (const scale0 of [1, 20, 90]) {
      const q = unitRows(nq, D, 1), p = unitRows(np, D, 2, q, nq), a = unitRows(na, D, 3), b = unitRows(na, D, 4, a, na);
      const emb = new Float32Array((nq + np + 2 * na) * D);
      emb.set(q, 0), emb.set(p, nq * D), emb.set(a, (nq + np) * D), emb.set(b, (nq + np + na) * D);
      const ls = new LearnedScale(scale0, { lrRatio: 1, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
      const tr = new ContrastiveTrainer(enc, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 0 },
        { scale: 20, symmetric, alignmentWeight: w, learnedScale: ls });
      const r = tr.lossAndGrad(emb, nq, np, na);
      const total = (s: number) => infonce64(q, p, nq, D, s, symmetric) + w * infonce64(a, b, na, D, s, true);
      // The engine's loss is the float64 one to float32 accuracy (its logits are float32).
      assert.ok(Math.abs(r.retrieval + w * r.alignment - total(ls.scale)) < 1e-5 * total(ls.scale), `scale ${scale0}: loss`);
      // Central difference in ln(scale) of the float64 loss: truncation error h^2/6 * f''' is below
      // 1e-8 here (h = 1e-4); the engine's gradient carries float32 rounding (relative ~1e-6 of the
      // terms summed), hence 1e-4 of the gradient's size plus 1e-6.
      const h = 1e-4, t = Math.log(ls.scale);
      const fd = (total(Math.exp(t + h)) - total(Math.exp(t - h))) / (2 * h);
      assert.ok(Math.abs(r.logScaleGrad - fd) <= 1e-4 * Math.abs(fd) + 1e-6,
        `symmetric ${symmetric}, scale ${scale0}: gradient ${r.logScaleGrad} vs finite differences ${fd}`);
      // The identity holds on either side: the passages' gradients give the same number.
      const side = logScaleGradient(p, r.grad.subarray(nq * D, (nq + np) * D)) +
        logScaleGradient(b, r.grad.subarray((nq + np + na) * D)) ;
      assert.ok(Math.abs(side - r.logScaleGrad) <= 1e-4 * Math.abs(fd) + 1e-6, `passage side ${side} vs ${r.logScaleGrad}`);
      if (scale0 === 1) assert.ok(r.logScaleGrad < 0, 'positives score highest: a larger scale lowers the loss');
    }
  enc.dispose();
});

test('a fixed temperature computes no gradient and uses loss.scale', () => {
  const enc = Encoder.create(cfg);
  const D = enc.embeddingDim, q = unitRows(3, D, 5), p = unitRows(3, D, 6, q, 3);
  const emb = new Float32Array(6 * D);
  emb.set(q, 0), emb.set(p, 3 * D);
  const tr = new ContrastiveTrainer(enc, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 0 }, { scale: 7, symmetric: false });
  const r = tr.lossAndGrad(emb, 3, 3, 0);
  assert.equal(r.logScaleGrad, 0);
  assert.equal(tr.scale, 7);
  assert.ok(Math.abs(r.retrieval - infonce64(q, p, 3, D, 7, false)) < 1e-5 * r.retrieval);
  enc.dispose();
});

// torch.optim.AdamW (weight_decay=0) on a float64 scalar, clamped after each step as open_clip does.
const torchAdam = `
import json, math, sys, torch
a = json.loads(sys.argv[1])
p = torch.nn.Parameter(torch.tensor(a["init"], dtype=torch.float64))
opt = torch.optim.AdamW([p], lr=1.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
out = []
for g, lr in zip(a["grads"], a["lrs"]):
    for group in opt.param_groups: group["lr"] = lr * a["ratio"]
    p.grad = torch.tensor(g, dtype=torch.float64)
    opt.step()
    with torch.no_grad(): p.clamp_(0, math.log(100))
    out.append(p.item())
print(json.dumps(out))
`;

test('the temperature\'s Adam step is torch.optim.AdamW\'s, with the CLIP clamp', { skip: process.env.XLIR_PYTHON ? false : 'XLIR_PYTHON not set (no PyTorch)' }, () => {
  const r = mulberry32(9);
  // Mixed signs and sizes, then a run of negative gradients that drives the scale into the clamp.
  const grads = [...Array.from({ length: 20 }, () => (r() - 0.5) * 3), ...Array.from({ length: 30 }, () => -5 - r())];
  const lrs = grads.map((_, i) => 0.05 * Math.min(1, (i + 1) / 5));
  const ratio = 2;
  const ls = new LearnedScale(20, { lrRatio: ratio, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
  const ours = grads.map((g, i) => (ls.step(g, lrs[i]), ls.getState().logScale));
  const py = spawnSync(process.env.XLIR_PYTHON!, ['-c', torchAdam, JSON.stringify({ init: Math.log(20), grads, lrs, ratio })], { encoding: 'utf8' });
  assert.equal(py.status, 0, py.stderr);
  const ref = JSON.parse(py.stdout) as number[];
  // Both in float64; torch forms the moments with lerp/addcmul, a different rounding order: 1e-12.
  for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(ours[i] - ref[i]) <= 1e-12 * Math.abs(ref[i]) + 1e-15, `step ${i + 1}: ${ours[i]} vs torch ${ref[i]}`);
  assert.equal(ours[ours.length - 1], MAX_LOG_SCALE, 'clamped at temperature 0.01');
  assert.equal(ls.scale, Math.fround(100));
});

test('state round trip; bad starts and bad states are refused', () => {
  const opts = { lrRatio: 1, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
  const a = new LearnedScale(20, opts);
  a.step(0.7, 1e-2), a.step(-0.2, 1e-2);
  const b = new LearnedScale(5, opts);
  b.setState(a.getState());
  a.step(0.1, 1e-2), b.step(0.1, 1e-2);
  assert.deepEqual(b.getState(), a.getState());
  assert.throws(() => new LearnedScale(200, opts), /start in \[0.01, 1\]/);
  assert.throws(() => b.setState({ logScale: NaN, m: 0, v: 0, step: 1 }), /logScale is not a finite number/);
  assert.throws(() => a.step(Infinity, 1e-3), /gradient is Infinity/);
});

test('--learn-temperature options; runs that do not learn it keep their run keys', async () => {
  const base = ['--data', 'a.jsonl', '--out', 'o', '--scratch', 'tiny', '--tokenizer', 'v.txt'];
  const off = await parseTrainArgs(base);
  assert.equal(off.learnTemperature, false);
  assert.ok(!('learnTemperature' in definingConfigs(off)[0]) && !('temperatureLr' in definingConfigs(off)[0]),
    'the new options must not change the key of a run that does not use them');
  const on = await parseTrainArgs([...base, '--learn-temperature', '--lr', '1e-4']);
  assert.equal(on.temperatureLr, 1e-4, 'default: the model\'s learning rate');
  assert.equal(definingConfigs(on)[0].learnTemperature, true);
  assert.equal((await parseTrainArgs([...base, '--learn-temperature', '--temperature-lr', '1e-2'])).temperatureLr, 1e-2);
  await assert.rejects(parseTrainArgs([...base, '--temperature-lr', '1e-2']), /--temperature-lr goes with --learn-temperature/);
  await assert.rejects(parseTrainArgs([...base, '--learn-temperature', '--temperature', '0.005']), /--temperature must be in \[0.01, 1\] to be learned/);
});
