// Training-step and encoding throughput of the xlir engine against the PyTorch /
// sentence-transformers peer (bench/torch_train_step.py), plus achieved matrix GFLOP/s against the
// engine's own measured matrix-product peak. A benchmark that prints a table, not a test.
//
//   npx tsx bench/train_step.ts [--configs small,base] [--precisions fp32,bf16] [--steps N]
//                               [--threads 2] [--no-torch] [--json FILE]
//
// Per configuration and precision:
//   xlir train:  zeroGrad -> forward(train, dropoutSeed = step) on 32 x 128 tokens (16 queries then
//                16 positive passages) -> infonce(scale 20) -> backward -> AdamW.step(lr 2e-5,
//                wd 0.01, clip 1.0); 2 warm-up steps, then N timed steps (default 5 base, 10 small).
//   xlir encode: model.encode on the same batch shape (inference), 2 warm-up calls, N timed.
//   torch:       bench/torch_train_step.py --json in train and encode mode, same shape, threads,
//                precision and steps.
// The parts of the xlir step (forward / infonce / backward / AdamW) are timed separately too, and
// the linear layers' matrix products are timed on their own through benchGemm to estimate how much
// of forward/backward is matrix work and how much is everything else.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { native, type Precision, type TokenBatch } from '../src/native.ts';
import { lossAndGrad, pythonPath, xlmrConfig } from './common.ts';
import { mulberry32 } from '../src/rng.ts';

interface Shape {
  name: string;
  layers: number;
  hidden: number;
  heads: number;
  ffn: number;
  vocab: number;
}

const SHAPES: Record<string, Shape> = {
  small: { name: 'small', layers: 4, hidden: 256, heads: 4, ffn: 1024, vocab: 32000 },
  base: { name: 'base', layers: 12, hidden: 768, heads: 12, ffn: 3072, vocab: 32000 },
};

const BATCH = 32; // sequences per step: 16 queries + 16 positive passages
const SEQ = 128; // tokens per sequence, <s> and </s> included
const NUM_QUERIES = BATCH / 2;
const WARMUP = 2;
const LR = 2e-5;
const SCALE = 20;

// ---------------------------------------------------------------------------------------------
// Arguments

const { values: args } = parseArgs({
  options: {
    configs: { type: 'string', default: 'small,base' },
    precisions: { type: 'string', default: 'fp32,bf16' },
    steps: { type: 'string' },
    threads: { type: 'string', default: '2' },
    'no-torch': { type: 'boolean', default: false },
    'no-breakdown': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
  strict: true,
});

const configs = String(args.configs).split(',').map((s) => s.trim()).filter(Boolean);
for (const c of configs) if (!SHAPES[c]) throw new Error(`unknown config '${c}' (known: ${Object.keys(SHAPES).join(', ')})`);
const precisions = String(args.precisions).split(',').map((s) => s.trim()).filter(Boolean) as Precision[];
for (const p of precisions) if (p !== 'fp32' && p !== 'bf16') throw new Error(`unknown precision '${p}' (fp32, bf16)`);
const threads = Number(args.threads);
if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads must be a positive integer, got ${args.threads}`);
const stepsOverride = args.steps !== undefined ? Number(args.steps) : undefined;
if (stepsOverride !== undefined && (!Number.isInteger(stepsOverride) || stepsOverride < 1))
  throw new Error(`--steps must be a positive integer, got ${args.steps}`);
const stepsFor = (c: string) => stepsOverride ?? (c === 'base' ? 5 : 10);

// ---------------------------------------------------------------------------------------------
// Helpers

const addon = native();
addon.setNumThreads(threads);

function log(msg: string) {
  process.stderr.write(`[train_step] ${msg}\n`);
}


/** B sequences of SEQ tokens: <s>=0, random ids in [3, vocab) (never the pad id 1), </s>=2. */
function makeBatch(vocab: number, seed: number): TokenBatch {
  const r = mulberry32(seed);
  const ids = new Int32Array(BATCH * SEQ);
  for (let s = 0; s < BATCH; s++) {
    for (let i = 0; i < SEQ; i++) ids[s * SEQ + i] = i === 0 ? 0 : i === SEQ - 1 ? 2 : 3 + Math.floor(r() * (vocab - 3));
  }
  return { ids, lengths: new Int32Array(BATCH).fill(SEQ) };
}

const modelConfig = xlmrConfig;

/** Parameters in the encoder layers' weight matrices (q, k, v, attention output, FFN in, FFN out). */
function layerMatrixParams(s: Shape) {
  return s.layers * (4 * s.hidden * s.hidden + 2 * s.hidden * s.ffn);
}

/**
 * Matrix FLOPs of one step over T tokens in sequences of SEQ tokens.
 *  linearFwd  = 2 T P (P = layerMatrixParams)
 *  attnFwd    = 4 T SEQ H per layer (Q K^T and P V)
 *  backward   = 2x forward (data and weight gradients; attention: dV, dP, dQ, dK)
 *  recompute  = 2 T SEQ H per layer (xlir recomputes Q K^T in backward instead of storing the
 *               probabilities)
 * Not counted: embeddings, LayerNorm, GELU (and its recompute), softmax, dropout, pooling,
 * normalisation, InfoNCE (16 x 16 x D), AdamW.
 */
function flops(s: Shape) {
  const T = BATCH * SEQ;
  const linearFwd = 2 * T * layerMatrixParams(s);
  const attnFwd = 4 * T * SEQ * s.hidden * s.layers;
  const fwd = linearFwd + attnFwd;
  const bwd = 2 * fwd;
  const recompute = 2 * T * SEQ * s.hidden * s.layers;
  return { linearFwd, attnFwd, forward: fwd, backward: bwd, recompute, trainXlir: fwd + bwd + recompute, trainModel: fwd + bwd, encode: fwd };
}

const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
const median = (a: number[]) => {
  const b = [...a].sort((x, y) => x - y);
  const m = b.length >> 1;
  return b.length % 2 ? b[m] : (b[m - 1] + b[m]) / 2;
};

/** GFLOP/s of benchGemm(M, N, K): ~targetS seconds of repetitions after its own warm-up. */
function gemmGflops(M: number, N: number, K: number, p: Precision, targetS: number, minIters = 2) {
  const one = addon.benchGemm(M, N, K, p, 1);
  const iters = Math.max(minIters, Math.round(targetS / Math.max(one, 1e-6)));
  const s = addon.benchGemm(M, N, K, p, iters);
  return { gflops: (2 * M * N * K * iters) / s / 1e9, sPerIter: s / iters, iters };
}

// ---------------------------------------------------------------------------------------------
// xlir

interface XlirTrain {
  tokensPerS: number;
  msPerStep: number;
  msPerStepMedian: number;
  msPerStepMin: number;
  /** From the median step time (the table's figure: robust to bursts of load from other processes). */
  tokensPerSMedian: number;
  msParts: { zeroGrad: number; forward: number; infonce: number; backward: number; adamw: number };
  lastLoss: number;
  gradNorm: number;
}
interface XlirEncode {
  tokensPerS: number;
  msPerStep: number;
  msPerStepMedian: number;
  msPerStepMin: number;
  tokensPerSMedian: number;
}

async function xlirRun(s: Shape, p: Precision, steps: number) {
  const model = new addon.Model(modelConfig(s));
  try {
    model.setPrecision(p);
    const opt = new addon.AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1.0 });
    const D = model.embeddingDim;
    // A fresh batch per step, made before the clock starts (as the torch peer does).
    const batches = Array.from({ length: WARMUP + steps }, (_, i) => makeBatch(s.vocab, 1000 + i));

    const parts = { zeroGrad: [] as number[], forward: [] as number[], infonce: [] as number[], backward: [] as number[], adamw: [] as number[] };
    const stepMs: number[] = [];
    let lastLoss = NaN;
    let gradNorm = NaN;
    let timedTotal = 0;
    for (let step = 0; step < WARMUP + steps; step++) {
      const timed = step >= WARMUP;
      const t0 = performance.now();
      model.zeroGrad();
      const t1 = performance.now();
      const emb = await model.forward(batches[step], { dropoutSeed: step });
      const t2 = performance.now();
      const r = lossAndGrad(emb, NUM_QUERIES, D, SCALE);
      const grad = r.grad;
      const t3 = performance.now();
      await model.backward(grad);
      const t4 = performance.now();
      const st = await opt.step(LR);
      const t5 = performance.now();
      lastLoss = r.loss;
      gradNorm = st.gradNorm;
      if (!Number.isFinite(lastLoss)) throw new Error(`xlir ${s.name} ${p}: loss is ${lastLoss} at step ${step}`);
      log(`xlir ${s.name} ${p} train step ${step}${timed ? '' : ' (warm-up)'}: ${(t5 - t0).toFixed(0)} ms ` +
        `(fwd ${(t2 - t1).toFixed(0)}, bwd ${(t4 - t3).toFixed(0)}, adamw ${(t5 - t4).toFixed(0)}), loss ${lastLoss.toFixed(4)}`);
      if (!timed) continue;
      parts.zeroGrad.push(t1 - t0);
      parts.forward.push(t2 - t1);
      parts.infonce.push(t3 - t2);
      parts.backward.push(t4 - t3);
      parts.adamw.push(t5 - t4);
      stepMs.push(t5 - t0);
      timedTotal += t5 - t0;
    }
    const mean = (a: number[]) => sum(a) / a.length;
    const train: XlirTrain = {
      tokensPerS: (BATCH * SEQ * steps) / (timedTotal / 1000),
      msPerStep: timedTotal / steps,
      msPerStepMedian: median(stepMs),
      msPerStepMin: Math.min(...stepMs),
      tokensPerSMedian: (BATCH * SEQ) / (median(stepMs) / 1000),
      // Medians of the parts (robust to bursts of outside load), so they need not add up to the step exactly.
      msParts: { zeroGrad: median(parts.zeroGrad), forward: median(parts.forward), infonce: median(parts.infonce), backward: median(parts.backward), adamw: median(parts.adamw) },
      lastLoss,
      gradNorm,
    };

    // Encoding: inference forward + mean pooling + normalize of the same batch shape.
    const encMs: number[] = [];
    for (let i = 0; i < WARMUP + steps; i++) {
      const t0 = performance.now();
      const e = await model.encode(batches[i]);
      const t1 = performance.now();
      if (!Number.isFinite(e[0])) throw new Error(`xlir ${s.name} ${p}: encode produced ${e[0]}`);
      if (i >= WARMUP) encMs.push(t1 - t0);
    }
    const encTotal = sum(encMs);
    const encode: XlirEncode = {
      tokensPerS: (BATCH * SEQ * steps) / (encTotal / 1000), msPerStep: encTotal / steps, msPerStepMedian: median(encMs),
      msPerStepMin: Math.min(...encMs), tokensPerSMedian: (BATCH * SEQ) / (median(encMs) / 1000),
    };
    log(`xlir ${s.name} ${p}: train ${train.tokensPerSMedian.toFixed(0)} tok/s, encode ${encode.tokensPerSMedian.toFixed(0)} tok/s (medians)`);
    return { train, encode, numParameters: model.numParameters };
  } finally {
    model.dispose();
  }
}

/**
 * Time the linear layers' products of one step on their own (benchGemm: [M,K] x [N,K]^T, fp32
 * output, bf16 inputs converted per call as the engine does). Weight-gradient products are run with
 * the same M, N, K but benchGemm's layout (the engine runs them with A transposed).
 */
function linearGemmEstimate(s: Shape, p: Precision) {
  const T = BATCH * SEQ, H = s.hidden, F = s.ffn;
  const fwdShapes: [number, number, number][] = [[T, 3 * H, H], [T, H, H], [T, F, H], [T, H, F]];
  const dxShapes: [number, number, number][] = [[T, H, 3 * H], [T, H, H], [T, H, F], [T, F, H]];
  const dwShapes: [number, number, number][] = [[3 * H, H, T], [H, H, T], [F, H, T], [H, F, T]];
  const time = (shapes: [number, number, number][]) =>
    sum(shapes.map(([M, N, K]) => gemmGflops(M, N, K, p, 0.3).sPerIter)) * s.layers * 1000;
  return { forwardMs: time(fwdShapes), backwardDxMs: time(dxShapes), backwardDwMs: time(dwShapes) };
}

// ---------------------------------------------------------------------------------------------
// torch

interface TorchResult {
  tokens_per_s: number;
  ms_per_step: number;
  ms_per_step_median: number;
  ms_per_step_min: number;
  [k: string]: unknown;
}

let torchNote: string | undefined;

function torchRun(s: Shape, p: Precision, steps: number, mode: 'train' | 'encode'): TorchResult | undefined {
  if (args['no-torch']) {
    torchNote = 'torch skipped (--no-torch)';
    return undefined;
  }
  const py = pythonPath();
  if (!py) {
    torchNote = 'torch skipped: no python found (set XLIR_PYTHON, or create .venv or /tmp/venv)';
    return undefined;
  }
  const argv = ['bench/torch_train_step.py', '--layers', `${s.layers}`, '--hidden', `${s.hidden}`, '--heads', `${s.heads}`,
    '--ffn', `${s.ffn}`, '--vocab', `${s.vocab}`, '--batch', `${BATCH}`, '--seq', `${SEQ}`, '--steps', `${steps}`,
    '--precision', p, '--threads', `${threads}`, '--mode', mode, '--warmup', `${WARMUP}`, '--json'];
  log(`torch ${s.name} ${p} ${mode}: ${py} ${argv.join(' ')}`);
  const r = spawnSync(py, argv, {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: { ...process.env, OMP_NUM_THREADS: `${threads}`, MKL_NUM_THREADS: `${threads}` },
  });
  if (r.error || r.status !== 0) {
    const why = r.error ? String(r.error) : `exit ${r.status}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`;
    torchNote = `torch unavailable or failed (${py}): ${why}`;
    log(torchNote);
    return undefined;
  }
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (!line) {
    torchNote = `torch printed no JSON line: ${r.stdout.slice(-300)}`;
    return undefined;
  }
  const j = JSON.parse(line) as TorchResult;
  log(`torch ${s.name} ${p} ${mode}: ${j.tokens_per_s.toFixed(0)} tok/s (mean), median step ${j.ms_per_step_median.toFixed(0)} ms`);
  return j;
}

// ---------------------------------------------------------------------------------------------
// Main

interface Row {
  config: string;
  precision: Precision;
  steps: number;
  xlirTrain: XlirTrain;
  xlirEncode: XlirEncode;
  torchTrain?: TorchResult;
  torchEncode?: TorchResult;
  torchTrainTokensPerSMedian?: number;
  torchEncodeTokensPerSMedian?: number;
  /** xlir / torch throughput from the median step times. */
  trainRatio?: number;
  encodeRatio?: number;
  flops: ReturnType<typeof flops>;
  xlirTrainGflops: number;
  xlirEncodeGflops: number;
  torchTrainGflops?: number;
  gemmPeakGflops: number;
  percentOfPeak: number;
  loadAvg1: { beforeXlir: number; afterXlir: number; afterTorch: number };
  linearGemmEstimate?: ReturnType<typeof linearGemmEstimate>;
  numParameters: number;
}

async function main() {
  const cpu = cpus();
  const started = new Date();
  const info = addon.info();
  console.log(`# xlir training-step benchmark`);
  console.log(`machine: ${cpu[0]?.model ?? 'unknown'}, ${cpu.length} logical cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB`);
  console.log(`date: ${started.toISOString()}; 1-minute load average at start ${loadavg()[0].toFixed(2)}`);
  console.log(`native: ${JSON.stringify(info)}`);
  console.log(`threads: ${threads}; batch ${BATCH} x ${SEQ} tokens (${NUM_QUERIES} queries + ${NUM_QUERIES} passages), ` +
    `roberta, dropout 0.1, mean pooling + normalize, InfoNCE scale ${SCALE}, AdamW lr ${LR} wd 0.01 clip 1.0; ${WARMUP} warm-up steps`);
  console.log(`command: npx tsx bench/train_step.ts ${process.argv.slice(2).join(' ')}`.trimEnd());

  // Matrix-product peak, measured once per precision in this run.
  const peak: Partial<Record<Precision, ReturnType<typeof gemmGflops>>> = {};
  for (const p of precisions) {
    peak[p] = gemmGflops(4096, 3072, 768, p, 3, 5);
    log(`benchGemm(4096, 3072, 768, ${p}): ${peak[p]!.gflops.toFixed(1)} GFLOP/s (${peak[p]!.iters} iters)`);
  }

  const rows: Row[] = [];
  for (const c of configs) {
    const s = SHAPES[c];
    const steps = stepsFor(c);
    const f = flops(s);
    for (const p of precisions) {
      // The peak again right next to this row, so that both see the same machine (a shared machine's
      // load changes over minutes); the row's percentage uses this one.
      const rowPeak = gemmGflops(4096, 3072, 768, p, 3, 5);
      log(`benchGemm(4096, 3072, 768, ${p}) before ${c}: ${rowPeak.gflops.toFixed(1)} GFLOP/s; load average ${loadavg()[0].toFixed(2)}`);
      const loadBefore = loadavg()[0];
      const x = await xlirRun(s, p, steps);
      const loadAfterXlir = loadavg()[0];
      const est = args['no-breakdown'] ? undefined : linearGemmEstimate(s, p);
      const tt = torchRun(s, p, steps, 'train');
      const te = torchRun(s, p, steps, 'encode');
      const xlirTrainGflops = f.trainXlir / (x.train.msPerStepMedian / 1000) / 1e9;
      rows.push({
        config: c,
        precision: p,
        steps,
        xlirTrain: x.train,
        xlirEncode: x.encode,
        torchTrain: tt,
        torchEncode: te,
        torchTrainTokensPerSMedian: tt ? (BATCH * SEQ) / (tt.ms_per_step_median / 1000) : undefined,
        torchEncodeTokensPerSMedian: te ? (BATCH * SEQ) / (te.ms_per_step_median / 1000) : undefined,
        trainRatio: tt ? tt.ms_per_step_median / x.train.msPerStepMedian : undefined,
        encodeRatio: te ? te.ms_per_step_median / x.encode.msPerStepMedian : undefined,
        flops: f,
        xlirTrainGflops,
        xlirEncodeGflops: f.encode / (x.encode.msPerStepMedian / 1000) / 1e9,
        torchTrainGflops: tt ? f.trainModel / (tt.ms_per_step_median / 1000) / 1e9 : undefined,
        gemmPeakGflops: rowPeak.gflops,
        percentOfPeak: (100 * xlirTrainGflops) / rowPeak.gflops,
        loadAvg1: { beforeXlir: loadBefore, afterXlir: loadAfterXlir, afterTorch: loadavg()[0] },
        linearGemmEstimate: est,
        numParameters: x.numParameters,
      });
    }
  }

  const fmt = (v: number | undefined, d = 0) => (v === undefined ? 'n/a' : v.toFixed(d));
  console.log('');
  console.log('matrix-product peak, benchGemm(4096, 3072, 768) at the start of the run: ' +
    precisions.map((p) => `${p} ${peak[p]!.gflops.toFixed(1)} GFLOP/s`).join(', ') +
    '; next to each row: ' + rows.map((r) => `${r.config}/${r.precision} ${r.gemmPeakGflops.toFixed(1)}`).join(', ') +
    ' (the % column uses the row\'s own)');
  console.log('1-minute load average (other processes share these cores): ' +
    rows.map((r) => `${r.config}/${r.precision} ${r.loadAvg1.beforeXlir.toFixed(1)}/${r.loadAvg1.afterXlir.toFixed(1)}/${r.loadAvg1.afterTorch.toFixed(1)}`).join(', ') +
    ' (before xlir / after xlir / after torch)');
  console.log('');
  console.log('tok/s = 32*128 / median step time (mean and min in --json); ratio = xlir / torch; GFLOP/s = counted FLOPs / median xlir step.');
  console.log('');
  console.log('| config | precision | xlir train tok/s | torch train tok/s | ratio | xlir encode tok/s | torch encode tok/s | ratio | xlir GFLOP/s | % of gemm peak |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.config} | ${r.precision} | ${fmt(r.xlirTrain.tokensPerSMedian)} | ${fmt(r.torchTrainTokensPerSMedian)} | ${fmt(r.trainRatio, 2)} | ` +
      `${fmt(r.xlirEncode.tokensPerSMedian)} | ${fmt(r.torchEncodeTokensPerSMedian)} | ${fmt(r.encodeRatio, 2)} | ` +
      `${fmt(r.xlirTrainGflops, 1)} | ${fmt(r.percentOfPeak, 1)}% |`);
  }
  if (torchNote) console.log(`\nnote: ${torchNote}`);

  console.log('');
  console.log('step breakdown, ms (medians over the timed steps; step min in brackets); "linear gemm" = the linear layers\' products');
  console.log('of one step timed alone through benchGemm; "rest" = forward + backward - linear gemm (attention, LayerNorm, GELU, dropout, ...):');
  console.log('');
  console.log('| config | precision | xlir step | forward | infonce | backward | adamw | zeroGrad | linear gemm fwd | linear gemm bwd | rest of fwd+bwd | torch step | xlir encode | torch encode |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const m = r.xlirTrain.msParts;
    const e = r.linearGemmEstimate;
    const gb = e ? e.backwardDxMs + e.backwardDwMs : undefined;
    const rest = e ? m.forward + m.backward - e.forwardMs - gb! : undefined;
    const mm = (med: number | undefined, min: number | undefined) => (med === undefined ? 'n/a' : `${fmt(med)} (${fmt(min)})`);
    console.log(`| ${r.config} | ${r.precision} | ${mm(r.xlirTrain.msPerStepMedian, r.xlirTrain.msPerStepMin)} | ${fmt(m.forward)} | ` +
      `${fmt(m.infonce, 1)} | ${fmt(m.backward)} | ${fmt(m.adamw)} | ${fmt(m.zeroGrad)} | ${fmt(e?.forwardMs)} | ${fmt(gb)} | ${fmt(rest)} | ` +
      `${mm(r.torchTrain?.ms_per_step_median, r.torchTrain?.ms_per_step_min)} | ${mm(r.xlirEncode.msPerStepMedian, r.xlirEncode.msPerStepMin)} | ` +
      `${mm(r.torchEncode?.ms_per_step_median, r.torchEncode?.ms_per_step_min)} |`);
  }
  console.log('');
  console.log('FLOPs counted per training step (T = 4096 tokens, S = 128, L layers, H hidden, P = weight-matrix parameters of the layers):');
  console.log('  forward 2*T*P + 4*T*S*H*L; backward 2x forward; plus xlir\'s recompute of Q K^T in backward 2*T*S*H*L.');
  console.log('  Not counted: embeddings, LayerNorm, GELU, softmax, dropout, pooling, InfoNCE, AdamW.');
  for (const r of rows.filter((x, i, a) => a.findIndex((y) => y.config === x.config) === i)) {
    console.log(`  ${r.config}: ${(r.flops.trainXlir / 1e9).toFixed(1)} GFLOP/step (forward ${(r.flops.forward / 1e9).toFixed(1)}, ` +
      `backward ${(r.flops.backward / 1e9).toFixed(1)}, recompute ${(r.flops.recompute / 1e9).toFixed(1)}); ${r.numParameters} parameters`);
  }

  if (args.json) {
    writeFileSync(String(args.json), JSON.stringify({
      date: started.toISOString(),
      machine: { cpu: cpu[0]?.model, cores: cpu.length, memGiB: totalmem() / 2 ** 30 },
      native: info,
      threads,
      batch: BATCH,
      seq: SEQ,
      warmup: WARMUP,
      gemmPeak: peak,
      torchNote,
      rows,
    }, null, 2));
    log(`wrote ${args.json}`);
  }
}

await main();
