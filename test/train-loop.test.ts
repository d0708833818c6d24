// The training loop: an interrupted run resumes exactly where it stopped (same losses as an
// uninterrupted run), checkpoints are complete folders, the log has every step, a checkpoint of a
// different run is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Encoder } from '../src/encoder.ts';
import { ContrastiveTrainer } from '../src/trainer.ts';
import { LearnedScale } from '../src/temperature.ts';
import { TokenStore } from '../src/token-cache.ts';
import { assembleBatch, trainLoop, type LoopOptions, type LoopSampler, type TokenizedData } from '../src/train-loop.ts';
import type { NativeModelConfig } from '../src/native.ts';
import { randomSequences } from './helpers/random-tokens.ts';

const cfg: NativeModelConfig = {
  arch: 'roberta', vocabSize: 80, hiddenSize: 32, numLayers: 2, numHeads: 4, intermediateSize: 64, maxPositions: 40,
  typeVocabSize: 1, layerNormEps: 1e-5, padTokenId: 1, hiddenDropout: 0.1, attentionDropout: 0.1, pooling: 'mean',
  hasPooler: false, normalize: true, seed: 11,
};

function store(seqs: number[][]): TokenStore {
  const offsets = new Int32Array(seqs.length + 1);
  seqs.forEach((s, i) => (offsets[i + 1] = offsets[i] + s.length));
  return new TokenStore(offsets, Int32Array.from(seqs.flat()), 'test', false);
}

// 40 records: query = random words, positive = the same words shifted into another id range.
function data(): TokenizedData {
  const q = randomSequences(40, 5, { bos: 0, eos: 2, minWords: 3, maxWords: 10, lo: 3, hi: 41 });
  const p = q.map((s) => [0, ...s.slice(1, -1).map((x) => x + 38).reverse(), 2]);
  p.push([0, 5, 6, 7, 2]);  // one hard negative for record 0
  const negatives = Array.from({ length: 40 }, (_, i) => (i === 0 ? Int32Array.from([40]) : new Int32Array(0)));
  return { queries: store(q), passages: store(p), negatives };
}

// A seeded sampler whose state is its position: enough to test the loop's bookkeeping.
class TestSampler implements LoopSampler {
  constructor(public pos = 0) {}
  next() {
    const triplets = Array.from({ length: 6 }, (_, k) => {
      const i = (this.pos * 7 + k * 5) % 40;
      return { query: i, positive: i };
    });
    this.pos++;
    return { triplets };
  }
  getState() {
    return { pos: this.pos };
  }
}

function setup(outDir: string, over: Partial<LoopOptions> = {}, device = 'cpu', learnTemperature = false) {
  const enc = Encoder.create(cfg, { device });
  // A learned temperature at 25x the model's rate, so that it moves visibly in 12 steps.
  const learnedScale = learnTemperature ? new LearnedScale(20, { lrRatio: 25, beta1: 0.9, beta2: 0.999, eps: 1e-8 }) : undefined;
  const trainer = new ContrastiveTrainer(enc, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 },
    { scale: 20, symmetric: false, learnedScale }, 5);
  const d = data();
  const valSampler = new TestSampler(1000);
  const validation = [assembleBatch(valSampler.next(), d, 1), assembleBatch(valSampler.next(), d, 1)];
  const o: LoopOptions = {
    outDir, steps: 12, warmupSteps: 2, lr: 2e-3, seed: 3, hardNegatives: 1, evalEvery: 4, patience: 0, checkpointEvery: 100,
    runKey: 'k1', log: () => {}, ...over,
  };
  return { enc, trainer, learnedScale, run: () => trainLoop(trainer, new TestSampler(), d, validation, o, (st) => new TestSampler((st as { pos: number }).pos)) };
}

test('an interrupted run resumes exactly where it stopped', async () => {
  const a = mkdtempSync(join(tmpdir(), 'xlir-loop-a-')), b = mkdtempSync(join(tmpdir(), 'xlir-loop-b-'));
  const full = setup(a);
  const rf = await full.run();
  assert.equal(rf.state.stopped, 'done');
  assert.equal(rf.losses.length, 12);
  assert.ok(rf.losses[11] < rf.losses[0], `loss did not fall: ${rf.losses[0]} -> ${rf.losses[11]}`);

  const first = setup(b, { stopAfter: 5 });
  const r1 = await first.run();
  assert.equal(r1.state.stopped, 'interrupted');
  assert.equal(r1.losses.length, 5);
  assert.ok(existsSync(join(b, 'checkpoint', 'model', 'model.safetensors')));
  assert.ok(!readdirSync(b).some((f) => f.includes('.tmp-')), 'temporary checkpoint folder left behind');
  first.enc.dispose();
  // A fresh process would build everything anew: a new model from the same config, then resume.
  const second = setup(b);
  const r2 = await second.run();
  assert.equal(r2.state.stopped, 'done');
  assert.deepEqual(r2.losses, rf.losses, 'resumed losses differ from the uninterrupted run (the steps before the resume come from log.jsonl)');
  assert.deepEqual(r2.losses.slice(0, 5), r1.losses);
  assert.deepEqual(r2.validation, rf.validation, 'the resumed run reports every validation, the earlier ones from log.jsonl');
  assert.ok(r2.engineMs > r1.engineMs, 'engine time covers the steps before the resume');
  for (const p of second.enc.model.parameters())
    assert.deepEqual(second.enc.model.getParameter(p.name), full.enc.model.getParameter(p.name), p.name);

  const log = readFileSync(join(b, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(log.filter((e) => e.type === 'step').length, 12);
  assert.ok(log.filter((e) => e.type === 'validation').length >= 3);
  assert.ok(existsSync(join(b, 'best', 'config.json')), 'best model not saved');

  const other = setup(b, { runKey: 'k2' });
  await assert.rejects(other.run(), /belongs to a run with other settings/);
  // The same run's key as an earlier xlir version wrote it is accepted (train-config.ts definingConfigs).
  const upgraded = setup(b, { runKey: 'k3', earlierRunKeys: ['k1'] });
  assert.equal((await upgraded.run()).state.stopped, 'done');
  upgraded.enc.dispose();
  for (const x of [full, second, other]) x.enc.dispose();
});

// The whole loop (gradient caching with sub-batches of 5, validation, atomic checkpoints of the
// model and of the AdamW moments read back from the device, resume) on the 'emulated' device: the
// device code path with the CPU functions, which equals the CPU bit for bit in fp32, so the losses
// of an interrupted and resumed device run must equal the uninterrupted CPU run's exactly.
test('on a device (emulated): an interrupted run resumes and reproduces the CPU run', async () => {
  const a = mkdtempSync(join(tmpdir(), 'xlir-loop-cpu-')), b = mkdtempSync(join(tmpdir(), 'xlir-loop-dev-'));
  const cpu = setup(a);
  const rc = await cpu.run();
  const first = setup(b, { stopAfter: 5 }, 'emulated');
  assert.equal(first.enc.model.device, 'emulated');
  const r1 = await first.run();
  assert.equal(r1.state.stopped, 'interrupted');
  first.enc.dispose();
  const second = setup(b, {}, 'emulated');
  const r2 = await second.run();
  assert.deepEqual(r2.losses, rc.losses, 'device run (with a resume) differs from the CPU run');
  for (const p of second.enc.model.parameters())
    assert.deepEqual(second.enc.model.getParameter(p.name), cpu.enc.model.getParameter(p.name), p.name);
  for (const x of [cpu, second]) x.enc.dispose();
});

// A learned temperature is part of the resumed state: the resumed run's losses, weights and
// temperature equal the uninterrupted run's, and the log records the temperature of every step.
test('a learned temperature: logged, checkpointed, and resumed exactly', async () => {
  const a = mkdtempSync(join(tmpdir(), 'xlir-loop-ta-')), b = mkdtempSync(join(tmpdir(), 'xlir-loop-tb-'));
  const full = setup(a, {}, 'cpu', true);
  const rf = await full.run();
  const t = full.learnedScale!.temperature;
  assert.ok(Math.abs(t - 0.05) > 1e-3, `the temperature did not move: ${t}`);
  const fixed = setup(mkdtempSync(join(tmpdir(), 'xlir-loop-tc-')));
  const rx = await fixed.run();
  assert.notDeepEqual(rf.losses.slice(1), rx.losses.slice(1), 'a learned temperature changes the losses after the first step');

  const first = setup(b, { stopAfter: 5 }, 'cpu', true);
  const r1 = await first.run();
  first.enc.dispose();
  const second = setup(b, {}, 'cpu', true);
  const r2 = await second.run();
  assert.deepEqual(r2.losses, rf.losses, 'resumed losses differ from the uninterrupted run');
  assert.deepEqual(second.learnedScale!.getState(), full.learnedScale!.getState());
  assert.equal(r2.state.bestTemperature, rf.state.bestTemperature);
  assert.equal(typeof rf.state.bestTemperature, 'number');
  for (const p of second.enc.model.parameters())
    assert.deepEqual(second.enc.model.getParameter(p.name), full.enc.model.getParameter(p.name), p.name);
  const log = readFileSync(join(b, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const temps = log.filter((e) => e.type === 'step').map((e) => e.temperature);
  assert.equal(temps.length, 12);
  assert.equal(temps[0], 1 / Math.fround(20), 'step 1 uses the starting temperature');
  assert.ok(temps.every((x) => typeof x === 'number' && x >= 0.01 && x <= 1));
  assert.ok(log.filter((e) => e.type === 'validation').every((e) => typeof e.temperature === 'number'));
  // A checkpoint of a learning run without the temperature's state is refused, naming the file.
  const st = JSON.parse(readFileSync(join(b, 'checkpoint', 'state.json'), 'utf8'));
  delete st.learnedScale;
  writeFileSync(join(b, 'checkpoint', 'state.json'), JSON.stringify(st));
  const third = setup(b, {}, 'cpu', true);
  await assert.rejects(third.run(), /state\.json: no learned-temperature state/);
  for (const x of [full, fixed, second, third]) x.enc.dispose();
});

// Alignment pairs name records (their queries, or with 'passages' their positives) or bitext items
// (index >= the number of records: always the bitext text, kept after the records' queries).
test('assembleBatch: alignment pairs of records use queries or passages; bitext pairs their own texts', () => {
  const d: TokenizedData = {
    queries: store([[0, 5, 2], [0, 6, 2], [0, 7, 7, 2]]),  // record 0, record 1, bitext item 0
    passages: store([[0, 15, 2], [0, 16, 16, 2], [0, 17, 2]]),  // positives of records 0 and 1, a negative
    negatives: [Int32Array.from([2]), new Int32Array(0)],
  };
  const b = { triplets: [{ query: 0, positive: 0 }, { query: 1, positive: 1 }], alignment: [{ a: 0, b: 1 }, { a: 2, b: 2 }] };
  const q = assembleBatch(b, d, 1);
  assert.deepEqual([...q.passages.ids], [0, 15, 2, 0, 16, 16, 2, 0, 17, 2], 'positives, then the hard negative');
  assert.deepEqual([...q.alignA!.ids], [0, 5, 2, 0, 7, 7, 2]);
  assert.deepEqual([...q.alignB!.ids], [0, 6, 2, 0, 7, 7, 2]);
  const p = assembleBatch(b, d, 1, 'passages');
  assert.deepEqual([...p.alignA!.ids], [0, 15, 2, 0, 7, 7, 2]);
  assert.deepEqual([...p.alignB!.ids], [0, 16, 16, 2, 0, 7, 7, 2]);
  assert.deepEqual([...p.alignB!.lengths], [4, 4]);
  assert.deepEqual(p.queries, q.queries, 'the retrieval triplets do not change');
});

// A kill between the two renames that replace the checkpoint (src/atomic-dir.ts) leaves no
// checkpoint/ but the previous one aside: the next run puts it back and resumes from it, rather
// than starting over; the same for best/.
test('a run killed while replacing its checkpoint resumes from the previous one', async () => {
  const a = mkdtempSync(join(tmpdir(), 'xlir-loop-ka-')), b = mkdtempSync(join(tmpdir(), 'xlir-loop-kb-'));
  const full = setup(a);
  const rf = await full.run();
  const first = setup(b, { stopAfter: 5 });
  const r1 = await first.run();
  first.enc.dispose();
  const dead = 999_999_999;  // no such process
  renameSync(join(b, 'checkpoint'), join(b, `checkpoint.old-${dead}`));
  renameSync(join(b, 'best'), join(b, `best.old-${dead}`));
  mkdirSync(join(b, `checkpoint.tmp-${dead}`));  // the half-written new one
  const lines: string[] = [];
  const second = setup(b, { log: (l) => lines.push(l) });
  const r2 = await second.run();
  assert.ok(lines.some((l) => /restored .*checkpoint from checkpoint\.old-/.test(l)), lines.join('\n'));
  assert.ok(lines.some((l) => /resuming from .* at step 5/.test(l)), lines.join('\n'));
  assert.deepEqual(r2.losses, rf.losses, 'resumed losses differ from the uninterrupted run');
  assert.deepEqual(readdirSync(b).filter((f) => /\.(old|tmp)-/.test(f)), [], 'leftovers removed');
  assert.ok(existsSync(join(b, 'best', 'config.json')));
  for (const x of [full, second]) x.enc.dispose();
});

// A run killed (SIGKILL, out of memory) some steps after its last checkpoint: the resumed run redoes
// those steps, and the log keeps one line per step, in order, as an uninterrupted run's.
test('a hard kill after the last checkpoint: the resumed run redoes the steps and the log has each once', async () => {
  const a = mkdtempSync(join(tmpdir(), 'xlir-loop-ha-')), b = mkdtempSync(join(tmpdir(), 'xlir-loop-hb-'));
  const full = setup(a);
  const rf = await full.run();
  const first = setup(b, { stopAfter: 4 });
  await first.run();
  first.enc.dispose();
  cpSync(join(b, 'checkpoint'), join(a, 'step4'), { recursive: true });
  const second = setup(b, { stopAfter: 7 });
  await second.run();
  second.enc.dispose();
  // As if killed at step 7 before its checkpoint: the step-4 checkpoint, the log up to step 7 and a torn line.
  rmSync(join(b, 'checkpoint'), { recursive: true });
  cpSync(join(a, 'step4'), join(b, 'checkpoint'), { recursive: true });
  appendFileSync(join(b, 'log.jsonl'), '{"type":"step","st');
  const lines: string[] = [];
  const third = setup(b, { log: (l) => lines.push(l) });
  const r3 = await third.run();
  // steps 5 to 7, and apart the torn line (the validation at step 4 stays)
  assert.ok(lines.some((l) => /dropped 3 line\(s\) after step 4/.test(l)), lines.join('\n'));
  assert.ok(lines.some((l) => /dropped 1 line\(s\) that are not JSON \(line \d+; a torn last line/.test(l)), lines.join('\n'));
  assert.deepEqual(r3.losses, rf.losses, 'the whole run: steps 1-4 from the log, 5-12 redone');
  const log = readFileSync(join(b, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(log.filter((e) => e.type === 'step').map((e) => e.step), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  assert.deepEqual(log.filter((e) => e.type === 'step').map((e) => e.loss), rf.losses);
  for (const x of [full, third]) x.enc.dispose();
});

// A run whose loss (or gradient norm) stops being finite stops at once, saying so; the step is not
// logged and no checkpoint of it is written, so the last checkpoint keeps finite weights; and a
// model folder with a non-finite weight is refused when loaded, naming the tensor.
test('a diverged run stops before logging or saving the broken step; broken weights are refused on load', async () => {
  const b = mkdtempSync(join(tmpdir(), 'xlir-loop-nan-'));
  const run = setup(b, { checkpointEvery: 2 });
  const step = run.trainer.step.bind(run.trainer);
  let calls = 0;
  run.trainer.step = async (...args) => {
    const r = await step(...args);
    return ++calls === 5 ? { ...r, loss: Number.NaN } : r;
  };
  await assert.rejects(run.run(), /step 5: the loss is NaN \(learning rate [\d.e-]+\): training diverged\. Nothing of this step was saved; the last checkpoint is step 4's/);
  const log = readFileSync(join(b, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.type === 'step');
  assert.deepEqual(log.map((e) => e.step), [1, 2, 3, 4]);
  assert.equal(JSON.parse(readFileSync(join(b, 'checkpoint', 'state.json'), 'utf8')).step, 4);
  run.enc.dispose();
  // Broken weights on disk: refused with the tensor named.
  const bad = Encoder.create(cfg);
  const w = bad.model.getParameter('encoder.layer.1.output.dense.weight');
  w[17] = Number.POSITIVE_INFINITY;
  bad.model.setParameter('encoder.layer.1.output.dense.weight', w, [32, 64]);
  bad.save(join(b, 'broken'));
  bad.dispose();
  assert.throws(() => Encoder.load(join(b, 'broken')), /"encoder\.layer\.1\.output\.dense\.weight" holds a non-finite value \(Infinity\) at element 17/);
});
