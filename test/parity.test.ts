// Parity of the engine with Hugging Face transformers / PyTorch on tiny random BERT and XLM-R
// models (test/reference/hf_reference.py makes the reference live, with the Python in XLIR_PYTHON):
// hidden states, the three poolings, InfoNCE loss and embedding gradients, every parameter
// gradient, the weights after three clipped AdamW steps, and a saved folder read back by
// transformers and sentence-transformers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native, type NativeModel, type Pooling, type TokenBatch } from '../src/native.ts';
import { loadWeights, readModelFolder, saveModelFolder } from '../src/checkpoint.ts';
import { readSafetensors } from '../src/safetensors.ts';

const PY = process.env.XLIR_PYTHON;
const SKIP = PY ? false : 'XLIR_PYTHON is not set: parity with transformers/PyTorch not checked';
const refScript = fileURLToPath(new URL('./reference/hf_reference.py', import.meta.url));
const encScript = fileURLToPath(new URL('./reference/encode_folder.py', import.meta.url));

function python(args: string[]): void {
  const r = spawnSync(PY!, args, { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' } });
  assert.equal(r.status, 0, `${args.join(' ')} failed:\n${r.stderr}`);
}

// ||a - b|| / max(||a||, ||b||, floor).
function relErr(a: Float32Array, b: Float32Array, floor = 1e-6): number {
  assert.equal(a.length, b.length, 'length mismatch');
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    na += a[i] ** 2;
    nb += b[i] ** 2;
  }
  return Math.sqrt(d) / Math.max(Math.sqrt(na), Math.sqrt(nb), floor);
}

function packed(seqs: number[][]): TokenBatch {
  return { ids: Int32Array.from(seqs.flat()), lengths: Int32Array.from(seqs.map((s) => s.length)) };
}

// Tolerances. Both sides compute in fp32; only the order of summation differs (oneDNN blocking vs
// PyTorch's kernels, double-accumulated LayerNorm statistics here), so differences are a few ulp
// amplified by depth: 1e-5 relative for activations. Gradients pass through more products and a
// softmax, 1e-4. AdamW normalises each update to ~lr, so after three steps the weights may differ
// by a few lr x (relative gradient error); 1e-6 absolute is ~0.03% of the 3e-3 total movement.
const TOL_ACT = 1e-5;
const TOL_GRAD = 1e-4;
const TOL_STEP = 1e-2;
// bf16 inputs to every product (8 significant bits) through 2 layers: ~1e-2 relative.
const TOL_BF16 = 3e-2;

for (const arch of ['bert', 'roberta'] as const) {
  test(`parity with transformers: ${arch}`, { skip: SKIP }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), `xlir-parity-${arch}-`));
    python([refScript, '--arch', arch, '--out', dir]);
    const ref = readSafetensors(join(dir, 'reference.safetensors')).tensors;
    const R = (name: string) => {
      const x = ref.get(name);
      assert.ok(x, `reference lacks ${name}`);
      return x.data;
    };
    const batchJson = JSON.parse(readFileSync(join(dir, 'batch.json'), 'utf8')) as { queries: number[][]; passages: number[][] };
    const seqs = [...batchJson.queries, ...batchJson.passages];
    const nq = batchJson.queries.length;
    const batch = packed(seqs);
    const addon = native();

    const load = (pooling: Pooling, normalize: boolean): NativeModel => {
      const folder = readModelFolder(join(dir, 'model'), { pooling, normalize });
      try {
        const m = new addon.Model(folder.config);
        loadWeights(m, folder);
        return m;
      } finally {
        folder.tensors.close();
      }
    };

    await t.test('last hidden states', async () => {
      const m = load('mean', false);
      const h = await m.hiddenStates(batch);
      let off = 0;
      for (let k = 0; k < seqs.length; k++) {
        const n = seqs[k].length * 32;
        const e = relErr(h.subarray(off, off + n), R(`hidden.${k}`));
        assert.ok(e < TOL_ACT, `sequence ${k}: relative error ${e}`);
        off += n;
      }
      m.setPrecision('bf16');
      const hb = await m.hiddenStates(batch);
      const all = Float32Array.from(seqs.flatMap((_, k) => Array.from(R(`hidden.${k}`))));
      const eb = relErr(hb, all);
      assert.ok(eb < TOL_BF16, `bf16 hidden states: relative error ${eb}`);
      assert.ok(eb > 1e-6, 'bf16 path gave fp32 results: is bf16 really used?');
      m.dispose();
    });

    for (const [pooling, name] of [['cls', 'emb.cls'], ['mean', 'emb.mean'], ['pooler', 'emb.pooler']] as const) {
      await t.test(`pooling ${pooling}`, async () => {
        const m = load(pooling, false);
        const e = relErr(await m.encode(batch), R(name));
        assert.ok(e < TOL_ACT, `relative error ${e}`);
        m.dispose();
      });
    }

    await t.test('InfoNCE loss, embedding gradients, parameter gradients, 3 AdamW steps', async () => {
      const m = load('mean', true);
      const D = m.embeddingDim;
      const step = async () => {
        m.zeroGrad();
        const emb = await m.forward(batch, { dropoutSeed: 0 });
        const r = addon.infonce(emb.slice(0, nq * D), emb.slice(nq * D), nq, D, { scale: 20, symmetric: false });
        const g = new Float32Array(emb.length);
        g.set(r.gradQueries, 0);
        g.set(r.gradPassages, nq * D);
        await m.backward(g);
        return { emb, r };
      };
      const { emb, r } = await step();
      assert.ok(Math.abs(r.loss - R('loss')[0]) < 1e-5 * Math.abs(R('loss')[0]), `loss ${r.loss} vs ${R('loss')[0]}`);
      const sym = addon.infonce(emb.slice(0, nq * D), emb.slice(nq * D), nq, D, { scale: 20, symmetric: true });
      assert.ok(Math.abs(sym.loss - R('loss.sym')[0]) < 1e-5 * Math.abs(R('loss.sym')[0]), `symmetric loss ${sym.loss}`);
      assert.ok(relErr(r.gradQueries, R('gemb.q')) < TOL_GRAD, 'd loss / d query embeddings');
      assert.ok(relErr(r.gradPassages, R('gemb.p')) < TOL_GRAD, 'd loss / d passage embeddings');
      assert.ok(relErr(sym.gradQueries, R('gemb.q.sym')) < TOL_GRAD, 'symmetric d loss / d query embeddings');
      assert.ok(relErr(sym.gradPassages, R('gemb.p.sym')) < TOL_GRAD, 'symmetric d loss / d passage embeddings');
      for (const p of m.parameters()) {
        const want = R(`grad.${p.name}`);
        // Zero in exact arithmetic (the key bias; the pooler under mean pooling): compare
        // against a floor of 1e-6, far below the other gradients (~1e-2).
        const e = relErr(m.getGradient(p.name), want, 1e-4);
        assert.ok(e < TOL_GRAD, `gradient of ${p.name}: relative error ${e}`);
      }
      const opt = new addon.AdamW(m, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1.0 });
      for (let s = 0; s < 3; s++) {
        if (s > 0) await step();
        const { gradNorm } = await opt.step(1e-3);
        const want = R(`gradnorm.${s}`)[0];
        assert.ok(Math.abs(gradNorm - want) < 1e-4 * want, `step ${s}: gradient norm ${gradNorm} vs ${want}`);
      }
      const w0 = readModelFolder(join(dir, 'model'));
      for (const p of m.parameters()) {
        // The key bias has an exactly-zero gradient (softmax ignores a shift shared by all keys):
        // both sides feed rounding noise to Adam, which normalises it to steps of ~lr in
        // arbitrary directions, so there is nothing to compare.
        if (p.name.endsWith('attention.self.key.bias')) continue;
        const ours = m.getParameter(p.name), want = R(`step3.${p.name}`), init = w0.tensors.get(p.name);
        const moved = new Float32Array(want.length).map((_, i) => want[i] - init[i]);
        const diff = new Float32Array(want.length).map((_, i) => ours[i] - want[i]);
        const e = Math.hypot(...diff) / Math.max(Math.hypot(...moved), 1e-12);
        assert.ok(e < TOL_STEP, `${p.name} after 3 AdamW steps: difference ${e} of the distance moved`);
      }
      w0.tensors.close();

      // Round trip: the trained weights saved by xlir load in transformers and sentence-transformers.
      const out = join(dir, 'saved');
      const folder = readModelFolder(join(dir, 'model'), { pooling: 'mean', normalize: true });
      const cfg = folder.config;
      folder.tensors.close();
      saveModelFolder(m, cfg, out);
      const enc = join(dir, 'enc.safetensors');
      python([encScript, out, join(dir, 'batch.json'), enc]);
      const back = readSafetensors(enc).tensors;
      const h = await m.hiddenStates(batch);
      let off = 0;
      for (let k = 0; k < seqs.length; k++) {
        const n = seqs[k].length * 32;
        const e = relErr(h.subarray(off, off + n), back.get(`hidden.${k}`)!.data);
        assert.ok(e < TOL_ACT, `saved folder in transformers, sequence ${k}: relative error ${e}`);
        off += n;
      }
      const e = relErr(await m.encode(batch), back.get('st.emb')!.data);
      assert.ok(e < TOL_ACT, `saved folder in sentence-transformers: relative error ${e}`);
      m.dispose();
    });
  });
}
