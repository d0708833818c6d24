// End-to-end GPU benchmark (issue 3): xlir training steps and encoding of an XLM-R base dual encoder
// on realistic lengths, against sentence-transformers on the same GPU, same sequences, same run.
// A benchmark that prints a table, not a test.
//
//   npx tsx bench/gpu_train_step.ts [--device cuda:0] [--shape base|tiny] [--batch PAIRS] [--steps N]
//                                   [--warmup N] [--precisions bf16,fp32] [--no-torch] [--json FILE]
//                                   [--threads N] [--seed N] [--encode-batch N]
//
// The batch: --batch (query, passage) pairs (default 128; tiny: 8), queries of 8-32 tokens and
// passages of 64-256, drawn by makeLengthMixBatch from mulberry32(--seed) and packed in one batch,
// queries first. The same batch is used for every step and is written to a JSON file that the
// PyTorch peer reads (--lengths-file), so both engines run the very same token ids.
// Per step, as a trainer does: zeroGrad -> forward(train, dropoutSeed = step) -> native().infonce
// on the CPU (scale 20; query i's positive is passage i) -> backward -> AdamW.step(lr 2e-5, wd 0.01,
// clip 1.0, dense update). Step time = wall time from zeroGrad until the optimizer's promise
// resolves with the gradient norm (which the engine can only report once the step is done).
// Encoding: model.encode of the same 2 x PAIRS sequences (inference, no dropout).
// The peer: bench/torch_train_step.py --device cuda --lengths-file F (SentenceTransformer +
// MultipleNegativesRankingLoss(scale 20), bf16 autocast, each side padded to its longest sequence);
// its encode sorts by length and pads chunks of --encode-batch (sentence-transformers' encode()).
//
// --device cpu runs the same logic on the CPU engine (with --shape tiny, to check the benchmark
// itself on a machine without a GPU); there is no MFU then.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
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
  pairs: number;
  steps: number;
}

const SHAPES: Record<string, Shape> = {
  base: { name: 'base', layers: 12, hidden: 768, heads: 12, ffn: 3072, vocab: 250002, pairs: 128, steps: 20 },
  tiny: { name: 'tiny', layers: 2, hidden: 64, heads: 4, ffn: 128, vocab: 1000, pairs: 8, steps: 3 },
};

const LR = 2e-5;
const SCALE = 20;
// Each peer run (train, encode) is killed after this long, so that a hung peer cannot eat a GPU
// session (scripts/gpu-bench.sh sets XLIR_TORCH_TIMEOUT_S under its own limit).
const TORCH_TIMEOUT_MS = 1000 * Number(process.env.XLIR_TORCH_TIMEOUT_S ?? 300);

// Dense (no sparsity) bf16 tensor-core peaks from the data sheets, keyed by substrings of the GPU
// name; the same table as native/tests/cuda_bench.cu. NVL variants are left out (other clocks).
const PEAKS: { label: string; has: string[]; not?: string; bf16Tflops: number }[] = [
  { label: 'H100 SXM', has: ['H100', 'HBM3'], not: 'NVL', bf16Tflops: 989.4 },
  { label: 'H100 SXM', has: ['H100', 'SXM'], not: 'NVL', bf16Tflops: 989.4 },
  { label: 'H100 PCIe', has: ['H100', 'PCIe'], not: 'NVL', bf16Tflops: 756.5 },
  { label: 'H200 (as H100 SXM)', has: ['H200'], not: 'NVL', bf16Tflops: 989.4 },
  { label: 'A100', has: ['A100'], bf16Tflops: 312 },
];

// ---------------------------------------------------------------------------------------------
// Arguments

const { values: args } = parseArgs({
  options: {
    device: { type: 'string', default: 'cuda:0' },
    shape: { type: 'string', default: 'base' },
    batch: { type: 'string' },
    steps: { type: 'string' },
    warmup: { type: 'string', default: '3' },
    precisions: { type: 'string', default: 'bf16' },
    'no-torch': { type: 'boolean', default: false },
    json: { type: 'string' },
    threads: { type: 'string' },
    seed: { type: 'string', default: '1' },
    'encode-batch': { type: 'string', default: '32' },
  },
  strict: true,
});

/** Bad arguments: one line and exit status 2, no stack trace. */
function usage(msg: string): never {
  process.stderr.write(`gpu_train_step: ${msg}\n`);
  process.exit(2);
}

function intArg(name: string, v: string | undefined, min: number, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) usage(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

const shape = SHAPES[String(args.shape)];
if (!shape) usage(`unknown --shape '${args.shape}' (known: ${Object.keys(SHAPES).join(', ')})`);
const device = String(args.device);
const cudaIndex = /^cuda(:(\d+))?$/.exec(device);
// 'emulated': the device code path on the CPU (native/host_ops.cc), to exercise this program without a GPU.
if (device !== 'cpu' && device !== 'emulated' && !cudaIndex) usage(`--device must be cpu, emulated or cuda[:N], got '${device}'`);
const onCuda = !!cudaIndex;
const gpuIndex = cudaIndex ? Number(cudaIndex[2] ?? 0) : -1;
const pairs = intArg('batch', args.batch, 1, shape.pairs);
const steps = intArg('steps', args.steps, 1, shape.steps);
const warmup = intArg('warmup', args.warmup, 0, 3);
const seed = intArg('seed', args.seed, 0, 1);
const encodeBatch = intArg('encode-batch', args['encode-batch'], 1, 32);
const threads = intArg('threads', args.threads, 1, cpus().length);
const precisions = String(args.precisions).split(',').map((s) => s.trim()).filter(Boolean) as Precision[];
for (const p of precisions) if (p !== 'fp32' && p !== 'bf16') usage(`unknown precision '${p}' (fp32, bf16)`);
if (!precisions.length) usage('--precisions is empty');

function log(msg: string) {
  process.stderr.write(`[gpu_train_step] ${msg}\n`);
}

// ---------------------------------------------------------------------------------------------
// Batch and model

/**
 * PAIRS queries then PAIRS passages, packed. Draw order from r = mulberry32(seed) (mirrored by
 * length_mix_batch in bench/torch_train_step.py, which can therefore rebuild it from the seed):
 * the query lengths 8 + floor(r() * 25) (8..32), the passage lengths 64 + floor(r() * 193)
 * (64..256), then every sequence's ids, queries first: <s> = 0, 3 + floor(r() * (vocab - 3)) for
 * the L - 2 inner tokens (never a special id), </s> = 2.
 */
function makeLengthMixBatch(n: number, vocab: number, s: number) {
  const r = mulberry32(s);
  const lengths = new Int32Array(2 * n);
  for (let i = 0; i < n; i++) lengths[i] = 8 + Math.floor(r() * 25);
  for (let i = 0; i < n; i++) lengths[n + i] = 64 + Math.floor(r() * 193);
  const T = lengths.reduce((a, b) => a + b, 0);
  const ids = new Int32Array(T);
  const seqs: number[][] = [];
  let t = 0;
  for (const L of lengths) {
    const seq = [0];
    for (let i = 0; i < L - 2; i++) seq.push(3 + Math.floor(r() * (vocab - 3)));
    seq.push(2);
    ids.set(seq, t);
    t += L;
    seqs.push(seq);
  }
  const batch: TokenBatch = { ids, lengths };
  return { batch, queries: seqs.slice(0, n), passages: seqs.slice(n), T };
}

const modelConfig = xlmrConfig;


/**
 * FLOPs of one training step, the same count for xlir and the PyTorch peer so that ratios and MFU
 * are comparable (PaLM's MFU convention, real tokens only, so padding does not count as work):
 *   6 * N * tokens: each non-embedding parameter does a multiply-add (2 FLOPs) per token in the
 *     forward and twice that in the backward (data and weight gradients). Embeddings are lookups.
 *   12 * layers * hidden * sum(len^2): attention's Q K^T and P V, 2 * 2 * len^2 * hidden per
 *     sequence and layer in the forward, times 3 for forward + backward. Per sequence, as the
 *     packed engine computes it (a padded engine computes more; that work is not credited).
 * Recomputation (xlir's attention backward recomputes Q K^T) is not counted: MFU, not HFU.
 * Encoding: a third of each term (forward only).
 */
function stepFlops(nonEmbeddingParams: number, tokens: number, sumLenSq: number, s: Shape) {
  const train = 6 * nonEmbeddingParams * tokens + 12 * s.layers * s.hidden * sumLenSq;
  return { train, encode: train / 3 };
}

/** Parameters outside the embeddings (what 6 N counts): per layer q, k, v, attention output and
 * the two FFN matrices with their biases, and two LayerNorms. No pooler (mean pooling). */
function nonEmbeddingParams(s: Shape) {
  const H = s.hidden, F = s.ffn;
  return s.layers * (4 * (H * H + H) + (H * F + F) + (F * H + H) + 2 * 2 * H);
}

const median = (a: number[]) => {
  const b = [...a].sort((x, y) => x - y);
  const m = b.length >> 1;
  return b.length % 2 ? b[m] : (b[m - 1] + b[m]) / 2;
};

// ---------------------------------------------------------------------------------------------
// GPU name and peak

function gpuName(): string | undefined {
  if (!onCuda) return undefined;
  const r = spawnSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { encoding: 'utf8', timeout: 20_000 });
  if (r.error || r.status !== 0) return undefined;
  const lines = r.stdout.trim().split('\n').map((l) => l.trim()).filter(Boolean);
  return lines[gpuIndex] ?? lines[0];
}

function peakFor(name: string | undefined) {
  if (!name) return undefined;
  return PEAKS.find((p) => p.has.every((h) => name.includes(h)) && !(p.not && name.includes(p.not)));
}

// ---------------------------------------------------------------------------------------------
// xlir

interface Timing {
  msMedian: number;
  msMin: number;
  msMean: number;
}
const timing = (ms: number[]): Timing => ({
  msMedian: median(ms),
  msMin: Math.min(...ms),
  msMean: ms.reduce((a, b) => a + b, 0) / ms.length,
});

async function xlirRun(p: Precision, batch: TokenBatch) {
  const addon = native();
  const model = new addon.Model(modelConfig(shape));
  try {
    if (device !== 'cpu') {
      const t0 = performance.now();
      model.toDevice(device);
      log(`xlir ${p}: toDevice('${device}') ${(performance.now() - t0).toFixed(0)} ms`);
    }
    model.setPrecision(p);
    const opt = new addon.AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1.0 });
    const D = model.embeddingDim;
    const nonEmbedding = model.parameters()
      .filter((t) => !t.name.startsWith('embeddings.'))
      .reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);

    const parts = { forward: [] as number[], infonce: [] as number[], backward: [] as number[], adamw: [] as number[] };
    const stepMs: number[] = [];
    let loss = NaN;
    let gradNorm = NaN;
    for (let step = 0; step < warmup + steps; step++) {
      const t0 = performance.now();
      model.zeroGrad();
      const emb = await model.forward(batch, { dropoutSeed: step });
      const t1 = performance.now();
      const r = lossAndGrad(emb, pairs, D, SCALE);
      const grad = r.grad;
      const t2 = performance.now();
      await model.backward(grad);
      const t3 = performance.now();
      const st = await opt.step(LR);
      const t4 = performance.now();
      loss = r.loss;
      gradNorm = st.gradNorm;
      if (!Number.isFinite(loss) || !Number.isFinite(gradNorm))
        throw new Error(`xlir ${p}: loss ${loss}, gradient norm ${gradNorm} at step ${step}`);
      const timed = step >= warmup;
      log(`xlir ${p} train step ${step}${timed ? '' : ' (warm-up)'}: ${(t4 - t0).toFixed(1)} ms (fwd ${(t1 - t0).toFixed(1)}, ` +
        `infonce ${(t2 - t1).toFixed(1)}, bwd ${(t3 - t2).toFixed(1)}, adamw ${(t4 - t3).toFixed(1)}), loss ${loss.toFixed(4)}`);
      if (!timed) continue;
      stepMs.push(t4 - t0);
      parts.forward.push(t1 - t0);
      parts.infonce.push(t2 - t1);
      parts.backward.push(t3 - t2);
      parts.adamw.push(t4 - t3);
    }

    const encMs: number[] = [];
    for (let i = 0; i < warmup + steps; i++) {
      const t0 = performance.now();
      const e = await model.encode(batch);
      const t1 = performance.now();
      if (!Number.isFinite(e[0])) throw new Error(`xlir ${p}: encode produced ${e[0]}`);
      if (i >= warmup) encMs.push(t1 - t0);
    }
    return {
      train: timing(stepMs),
      parts: { forward: median(parts.forward), infonce: median(parts.infonce), backward: median(parts.backward), adamw: median(parts.adamw) },
      encode: timing(encMs),
      loss,
      gradNorm,
      numParameters: model.numParameters,
      nonEmbedding,
    };
  } finally {
    model.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// torch

interface TorchResult {
  tokens_per_s: number;
  padded_tokens_per_s: number;
  padded_tokens_per_step: number;
  tokens_per_step: number;
  ms_per_step_median: number;
  ms_per_step_min: number;
  peak_mem_gib?: number;
  last_loss: number | null;
  gpu?: string;
  torch: string;
  [k: string]: unknown;
}

const torchNotes: string[] = [];

function torchRun(p: Precision, mode: 'train' | 'encode', lengthsFile: string): TorchResult | undefined {
  if (args['no-torch']) return undefined;
  const py = pythonPath();
  if (!py) {
    torchNotes.push('torch skipped: no python found (set XLIR_PYTHON, or create .venv: scripts/setup.sh)');
    return undefined;
  }
  const argv = ['bench/torch_train_step.py', '--layers', `${shape.layers}`, '--hidden', `${shape.hidden}`,
    '--heads', `${shape.heads}`, '--ffn', `${shape.ffn}`, '--vocab', `${shape.vocab}`, '--lengths-file', lengthsFile,
    '--steps', `${steps}`, '--warmup', `${warmup}`, '--precision', p, '--mode', mode, '--device', onCuda ? 'cuda' : 'cpu',
    '--encode-batch', `${encodeBatch}`, '--json'];
  if (!onCuda) argv.push('--threads', `${threads}`);
  log(`torch ${p} ${mode}: ${py} ${argv.join(' ')}`);
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (onCuda) env.CUDA_VISIBLE_DEVICES = env.CUDA_VISIBLE_DEVICES ?? `${gpuIndex}`;
  else Object.assign(env, { OMP_NUM_THREADS: `${threads}`, MKL_NUM_THREADS: `${threads}` });
  const r = spawnSync(py, argv, { encoding: 'utf8', maxBuffer: 64 << 20, env, timeout: TORCH_TIMEOUT_MS });
  if (r.error || r.status !== 0) {
    const why = r.error ? String(r.error) : `exit ${r.status}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`;
    torchNotes.push(`torch ${p} ${mode} failed: ${why}`);
    log(torchNotes[torchNotes.length - 1]);
    return undefined;
  }
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (!line) {
    torchNotes.push(`torch ${p} ${mode} printed no JSON line: ${r.stdout.slice(-300)}`);
    return undefined;
  }
  const j = JSON.parse(line) as TorchResult;
  log(`torch ${p} ${mode}: median step ${j.ms_per_step_median.toFixed(1)} ms, ${j.tokens_per_s.toFixed(0)} real tok/s (mean)`);
  return j;
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  const addon = native();
  const info = addon.info();
  if (onCuda && !info.cuda)
    throw new Error(`--device ${device} requested but this xlir build has no CUDA: ${info.cudaReason} ` +
      `(use --device cpu --shape tiny to check the benchmark without a GPU)`);
  addon.setNumThreads(threads);

  const started = new Date();
  const gpu = gpuName();
  const peak = peakFor(gpu);
  const { batch, queries, passages, T } = makeLengthMixBatch(pairs, shape.vocab, seed);
  const lens = Array.from(batch.lengths);
  const sumLenSq = lens.reduce((a, L) => a + L * L, 0);
  const qTokens = lens.slice(0, pairs).reduce((a, b) => a + b, 0);
  const dir = mkdtempSync(join(tmpdir(), 'xlir-gpu-bench-'));
  const lengthsFile = join(dir, 'batch.json');
  writeFileSync(lengthsFile, JSON.stringify({ seed, queries, passages }));

  console.log('# xlir GPU training-step benchmark');
  console.log(`date: ${started.toISOString()}`);
  console.log(`device: ${device}; GPU: ${onCuda ? (gpu ?? 'n/a (nvidia-smi not found or failed)') : 'none (CPU engine)'}; ` +
    `CPU threads ${threads}`);
  console.log(`native: ${JSON.stringify(info)}`);
  console.log(`shape: ${shape.name} (${shape.layers} layers, hidden ${shape.hidden}, ${shape.heads} heads, ffn ${shape.ffn}, ` +
    `vocab ${shape.vocab}), roberta, dropout 0.1, mean pooling + normalize`);
  console.log(`batch: ${pairs} pairs (mulberry32 seed ${seed}): queries ${qTokens} tokens (${Math.min(...lens.slice(0, pairs))}-` +
    `${Math.max(...lens.slice(0, pairs))}), passages ${T - qTokens} tokens (${Math.min(...lens.slice(pairs))}-` +
    `${Math.max(...lens.slice(pairs))}); ${T} real tokens per step, packed; the same batch every step`);
  console.log(`step: zeroGrad -> forward -> infonce (CPU, scale ${SCALE}) -> backward -> AdamW (lr ${LR}, wd 0.01, clip 1.0, ` +
    `dense); ${warmup} warm-up + ${steps} timed steps; encode: the same ${2 * pairs} sequences`);
  console.log(`MFU limit: ${peak ? `${peak.label} bf16 dense ${peak.bf16Tflops} TFLOP/s (data sheet)` : 'n/a (GPU not in the peak table)'}`);
  console.log(`command: npx tsx bench/gpu_train_step.ts ${process.argv.slice(2).join(' ')}`.trimEnd());

  const nonEmbedding = nonEmbeddingParams(shape);
  const xlirErrors: string[] = [];
  const rows = [];
  try {
    for (const p of precisions) {
      // An xlir failure is reported and the peer still runs: its figures are worth the device time.
      let x: Awaited<ReturnType<typeof xlirRun>> | undefined;
      try {
        x = await xlirRun(p, batch);
      } catch (e) {
        xlirErrors.push(`xlir ${p}: ${e instanceof Error ? e.message : String(e)}`);
        log(`ERROR ${xlirErrors[xlirErrors.length - 1]}`);
      }
      if (x && x.nonEmbedding !== nonEmbedding)
        throw new Error(`the engine has ${x.nonEmbedding} non-embedding parameters, the FLOP count assumes ${nonEmbedding}`);
      const flops = stepFlops(nonEmbedding, T, sumLenSq, shape);
      const tt = torchRun(p, 'train', lengthsFile);
      const te = torchRun(p, 'encode', lengthsFile);
      if (tt && tt.tokens_per_step !== T) throw new Error(`torch ran ${tt.tokens_per_step} real tokens per step, xlir ${T}: not the same batch`);
      const mfu = (ms: number | undefined, f: number) => (peak && ms ? (100 * f) / (ms / 1000) / (peak.bf16Tflops * 1e12) : undefined);
      rows.push({
        precision: p,
        xlir: x,
        torchTrain: tt,
        torchEncode: te,
        flops,
        xlirTrainTokS: x ? T / (x.train.msMedian / 1000) : undefined,
        xlirEncodeTokS: x ? T / (x.encode.msMedian / 1000) : undefined,
        torchTrainTokS: tt ? T / (tt.ms_per_step_median / 1000) : undefined,
        torchEncodeTokS: te ? T / (te.ms_per_step_median / 1000) : undefined,
        xlirTrainMfu: mfu(x?.train.msMedian, flops.train),
        torchTrainMfu: mfu(tt?.ms_per_step_median, flops.train),
        xlirEncodeMfu: mfu(x?.encode.msMedian, flops.encode),
        torchEncodeMfu: mfu(te?.ms_per_step_median, flops.encode),
        trainRatio: tt && x ? tt.ms_per_step_median / x.train.msMedian : undefined,
        encodeRatio: te && x ? te.ms_per_step_median / x.encode.msMedian : undefined,
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const f = (v: number | undefined, d = 0) => (v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(d));
  const pct = (v: number | undefined) => (v === undefined ? 'n/a' : `${v.toFixed(1)}%`);
  console.log('');
  console.log('tok/s = real (non-pad) tokens / median step time; MFU = counted FLOPs / median step / bf16 dense peak;');
  console.log('ratio = torch median step / xlir median step (> 1: xlir faster).');
  console.log('');
  console.log('| precision | xlir step ms | xlir tok/s | xlir MFU | torch step ms | torch tok/s | torch padded tok/s | torch MFU | ratio | torch peak mem GiB |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const tt = r.torchTrain;
    console.log(`| ${r.precision} | ${f(r.xlir?.train.msMedian, 1)} | ${f(r.xlirTrainTokS)} | ${pct(r.xlirTrainMfu)} | ` +
      `${f(tt?.ms_per_step_median, 1)} | ${f(r.torchTrainTokS)} | ${f(tt ? tt.padded_tokens_per_step / (tt.ms_per_step_median / 1000) : undefined)} | ` +
      `${pct(r.torchTrainMfu)} | ${f(r.trainRatio, 2)} | ${f(tt?.peak_mem_gib, 2)} |`);
  }
  console.log('');
  console.log(`encoding (${2 * pairs} sequences; torch: sorted by length, batches of ${encodeBatch}, each padded to its longest):`);
  console.log('');
  console.log('| precision | xlir encode ms | xlir tok/s | xlir MFU | torch encode ms | torch tok/s | torch padded tok/s | torch MFU | ratio |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const te = r.torchEncode;
    console.log(`| ${r.precision} | ${f(r.xlir?.encode.msMedian, 1)} | ${f(r.xlirEncodeTokS)} | ${pct(r.xlirEncodeMfu)} | ` +
      `${f(te?.ms_per_step_median, 1)} | ${f(r.torchEncodeTokS)} | ${f(te ? te.padded_tokens_per_step / (te.ms_per_step_median / 1000) : undefined)} | ` +
      `${pct(r.torchEncodeMfu)} | ${f(r.encodeRatio, 2)} |`);
  }
  console.log('');
  console.log('xlir step parts, ms (medians; forward includes zeroGrad and copying the embeddings to the host):');
  console.log('');
  console.log('| precision | step (min) | forward | infonce (CPU) | backward | adamw | last loss | grad norm | torch last loss |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const x = r.xlir;
    const m = x?.parts;
    console.log(`| ${r.precision} | ${f(x?.train.msMedian, 1)} (${f(x?.train.msMin, 1)}) | ${f(m?.forward, 1)} | ${f(m?.infonce, 2)} | ` +
      `${f(m?.backward, 1)} | ${f(m?.adamw, 1)} | ${f(x?.loss, 4)} | ${f(x?.gradNorm, 4)} | ${f(r.torchTrain?.last_loss ?? undefined, 4)} |`);
  }
  if (rows.length) {
    console.log('');
    console.log(`FLOPs per training step: 6 * ${nonEmbedding} non-embedding params * ${T} tokens + 12 * ${shape.layers} layers * ` +
      `${shape.hidden} * ${sumLenSq} (sum of len^2) = ${(rows[0].flops.train / 1e9).toFixed(2)} GFLOP (encode: a third).`);
  }
  for (const e of xlirErrors) console.log(`ERROR: ${e}`);
  for (const n of torchNotes) console.log(`note: ${n}`);
  if (args['no-torch']) console.log('note: torch skipped (--no-torch)');

  if (args.json) {
    writeFileSync(String(args.json), JSON.stringify({
      date: started.toISOString(), device, gpu, peak, native: info, shape, pairs, steps, warmup, seed, encodeBatch, threads,
      tokensPerStep: T, sumLenSq, nonEmbedding, lengths: lens, torchNotes, xlirErrors, rows,
    }, null, 2));
    log(`wrote ${args.json}`);
  }
  if (torchNotes.length && !args['no-torch']) process.exitCode = 3;
  if (xlirErrors.length) process.exitCode = 1;
}

try {
  await main();
} catch (e) {
  process.stderr.write(`gpu_train_step: ERROR: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}
