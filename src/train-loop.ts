// The training loop: sampled batches -> gradient-cached InfoNCE steps -> AdamW, with warm-up and
// linear decay, validation loss at intervals with early stopping (the paper's model selection),
// atomic checkpoints (model, optimizer, sampler, counters) from which an interrupted run resumes
// exactly, a progress bar, and a JSONL log of every step and validation.
//
// Overlap of data and compute: the engine runs on libuv's thread pool, so while a step's promise is
// pending the JavaScript thread assembles the next batch from the token cache; the time the engine
// then waits for data (dataWaitMs in the log) is what is left of batch assembly after that.
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Encoder } from './encoder.ts';
import type { TokenBatch } from './native.ts';
import { loadWeights } from './checkpoint.ts';
import { linearWarmupDecay } from './schedule.ts';
import { recoverDir, replaceDir, tmpDirFor } from './atomic-dir.ts';
import { Progress } from './progress.ts';
import { readSafetensors, writeSafetensors } from './safetensors.ts';
import { ContrastiveTrainer, type StepInput } from './trainer.ts';
import type { LearnedScaleState } from './temperature.ts';
import type { TokenStore } from './token-cache.ts';
import type { AlignmentTexts } from './train-config.ts';

/** What the loop needs from a batch sampler (src/sampler.ts). */
export interface LoopSampler {
  /** mode, dataset and language (of a mono batch) are logged with the step when present. */
  next(): { triplets: { query: number; positive: number }[]; alignment?: { a: number; b: number }[]; mode?: string; dataset?: string; language?: string };
  getState(): unknown;
}

/** Tokenized training data: record i's query and positive, and its hard negatives. */
export interface TokenizedData {
  queries: TokenStore;          // index: record
  passages: TokenStore;         // positives at [0, n), then negatives
  negatives: Int32Array[];      // per record: indices into passages
}

export interface LoopOptions {
  outDir: string;
  steps: number;
  warmupSteps: number;
  lr: number;
  seed: number;
  hardNegatives: number;        // per query, at most
  /** What the alignment pairs of records compare (assembleBatch); default 'queries'. */
  alignmentTexts?: AlignmentTexts;
  evalEvery: number;            // steps; 0: no validation
  patience: number;             // evaluations without improvement before stopping; 0: never stop early
  checkpointEvery: number;      // steps
  /** Fingerprint of everything that defines the run; a checkpoint of another run is refused. */
  runKey: string;
  /** The same run's key as earlier xlir versions wrote it (train-config.ts definingConfigs): accepted too. */
  earlierRunKeys?: string[];
  /** The settings behind runKey, kept in the checkpoint so that a refusal can name what changed. */
  defining?: unknown;
  log?: (line: string) => void;
  /** Test hook: stop (as if interrupted) after this many steps, writing a checkpoint. */
  stopAfter?: number;
}

export interface LoopState {
  step: number;
  sampler: unknown;
  bestLoss: number | null;
  bestStep: number;
  /** With a learned temperature: its value when the best model was saved. */
  bestTemperature?: number;
  badEvals: number;
  stopped: 'done' | 'early' | 'interrupted' | null;
}

/** The whole run's record: a resumed run's earlier steps and validations are read back from log.jsonl. */
export interface LoopResult {
  state: LoopState;
  /** Training loss of every step, in order. */
  losses: number[];
  validation: { step: number; loss: number }[];
  dataWaitMs: number;
  engineMs: number;
}

function pack(seqs: Int32Array[]): TokenBatch {
  const lengths = Int32Array.from(seqs, (s) => s.length);
  const ids = new Int32Array(lengths.reduce((a, b) => a + b, 0));
  let at = 0;
  for (const s of seqs) (ids.set(s, at), (at += s.length));
  return { ids, lengths };
}

/**
 * The token batches of a sampled batch. Alignment pairs of records use the records' queries, or with
 * alignmentTexts 'passages' their positive passages (METHOD.md section 4: translations of the same
 * query or passage); bitext pairs (index >= the number of records) always use the bitext texts.
 */
export function assembleBatch(b: ReturnType<LoopSampler['next']>, data: TokenizedData, hardNegatives: number,
  alignmentTexts: AlignmentTexts = 'queries'): StepInput {
  const q = b.triplets.map((t) => data.queries.get(t.query));
  const p = b.triplets.map((t) => data.passages.get(t.positive));
  if (hardNegatives > 0)
    for (const t of b.triplets) for (const k of data.negatives[t.positive]?.subarray(0, hardNegatives) ?? []) p.push(data.passages.get(k));
  const input: StepInput = { queries: pack(q), passages: pack(p) };
  if (b.alignment?.length) {
    // The passage store begins with the records' positives, in record order (TokenizedData).
    const records = data.negatives.length;
    const text = (i: number) => (alignmentTexts === 'passages' && i < records ? data.passages.get(i) : data.queries.get(i));
    input.alignA = pack(b.alignment.map((x) => text(x.a)));
    input.alignB = pack(b.alignment.map((x) => text(x.b)));
  }
  return input;
}

/** Dropout seed of a step: a pure function of (run seed, step), so a resumed run draws the same masks. */
export function stepSeed(seed: number, step: number): number {
  return Number(BigInt.asUintN(48, BigInt(seed) * 1_000_003n + BigInt(step)));
}

const CKPT = 'checkpoint';

export function runKey(parts: unknown): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

/** Writes model, optimizer and loop state as one folder, atomically (src/atomic-dir.ts). */
export function writeCheckpoint(dir: string, trainer: ContrastiveTrainer, state: LoopState, key: string, defining?: unknown): void {
  const final = join(dir, CKPT), tmp = tmpDirFor(final);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  trainer.encoder.save(join(tmp, 'model'));
  const s = trainer.optimizer.getState();
  writeSafetensors(join(tmp, 'optimizer.safetensors'), [
    { name: 'exp_avg', shape: [s.m.length], data: s.m },
    { name: 'exp_avg_sq', shape: [s.v.length], data: s.v },
  ], { metadata: { step: String(s.step) } });
  const learnedScale = trainer.loss.learnedScale?.getState();
  writeFileSync(join(tmp, 'state.json'), JSON.stringify({
    runKey: key, ...state, ...(learnedScale ? { learnedScale } : {}), ...(defining !== undefined ? { defining } : {}),
  }, null, 1));
  replaceDir(tmp, final);
}

type CheckpointState = LoopState & { runKey: string; learnedScale?: LearnedScaleState; defining?: Record<string, unknown> };

function checkpointState(dir: string): CheckpointState | null {
  const p = join(dir, CKPT, 'state.json');
  if (!existsSync(p)) return null;
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as CheckpointState;
  } catch (e) {
    throw new Error(`${p}: not a readable checkpoint state (${(e as Error).message}): use another --out folder, or --overwrite to start afresh`);
  }
}

/** "name: old -> new" for every top-level setting that differs (absent on one side included). */
export function settingsDiff(before: Record<string, unknown>, after: Record<string, unknown>): string[] {
  const show = (v: unknown) => (v === undefined ? '(absent)' : JSON.stringify(v));
  return [...new Set([...Object.keys(before), ...Object.keys(after)])]
    .filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]))
    .map((k) => `${k}: ${show(before[k])} -> ${show(after[k])}`);
}

/**
 * Refuses, before anything is read or written, to continue a checkpoint made with other settings,
 * naming them. `definings`: this run's settings in every form its key may have been written in
 * (train-config.ts definingConfigs), the current form first. A checkpoint written before xlir kept
 * its settings is left to the run-key check (assertSameRun).
 */
export function assertSameSettings(dir: string, definings: Record<string, unknown>[]): void {
  const st = checkpointState(dir);
  if (!st?.defining) return;
  const had = JSON.stringify(st.defining);
  if (definings.some((d) => JSON.stringify(d) === had)) return;
  const diff = settingsDiff(st.defining, definings[0]);
  throw new Error(`${join(dir, CKPT)} belongs to a run with other settings (${diff.length ? diff.join('; ') : 'the same values written in another form'}): ` +
    'rerun with its settings to resume it, or use another --out folder, or --overwrite to start afresh');
}

/** The run key of the checkpoint in `dir`, or null when there is none. */
export function checkpointRunKey(dir: string): string | null {
  return checkpointState(dir)?.runKey ?? null;
}

/** The run-key check: a checkpoint of this run (same settings, data, tokenization and step count) or none. */
export function assertSameRun(dir: string, key: string, earlierKeys: string[] = [], st = checkpointState(dir)): void {
  if (!st || st.runKey === key || earlierKeys.includes(st.runKey)) return;
  const why = st.defining ? 'the same settings, but other training or validation data, tokenization or step count' : 'other settings';
  throw new Error(`${join(dir, CKPT)} belongs to a run with ${why} (run key ${st.runKey}, this run ${key}): ` +
    'use another --out folder, or --overwrite to start afresh');
}

/** Restores model weights, optimizer and loop state from dir/checkpoint; null when there is none. */
export function readCheckpoint(dir: string, trainer: ContrastiveTrainer, key: string, earlierKeys: string[] = []): LoopState | null {
  const c = join(dir, CKPT);
  const st = checkpointState(dir);
  if (!st) return null;
  assertSameRun(dir, key, earlierKeys, st);
  loadWeights(trainer.encoder.model, join(c, 'model'));
  const o = readSafetensors(join(c, 'optimizer.safetensors'));
  trainer.optimizer.setState({
    step: Number(o.metadata.step), m: o.tensors.get('exp_avg')!.data, v: o.tensors.get('exp_avg_sq')!.data,
  });
  const { runKey: _key, learnedScale, defining: _defining, ...state } = st;
  if (trainer.loss.learnedScale) {
    // The run key covers --learn-temperature, so a checkpoint of this run has the state.
    if (!learnedScale) throw new Error(`${join(c, 'state.json')}: no learned-temperature state in a run that learns it`);
    try {
      trainer.loss.learnedScale.setState(learnedScale);
    } catch (e) {
      throw new Error(`${join(c, 'state.json')}: ${(e as Error).message}`);
    }
  }
  return state;
}

/**
 * Keeps the log lines of steps <= step: a run killed after its last checkpoint logged steps that the
 * resumed run redoes (and a kill during a write leaves a partial last line). A line that is not
 * JSON cannot be kept either; its line number is reported apart, since only a torn last line is
 * expected. Rewritten atomically.
 */
export function trimLog(path: string, step: number): { after: number; unreadable: number[] } {
  if (!existsSync(path)) return { after: 0, unreadable: [] };
  const lines = readFileSync(path, 'utf8').split('\n');
  const keep: string[] = [], unreadable: number[] = [];
  let after = 0;
  lines.forEach((l, i) => {
    if (!l.length) return;
    let s: unknown;
    try {
      s = (JSON.parse(l) as { step?: unknown }).step;
    } catch {
      unreadable.push(i + 1);
      return;
    }
    if ((s as number) <= step) keep.push(l);
    else after++;
  });
  if (!after && !unreadable.length) return { after, unreadable };
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, keep.map((l) => l + '\n').join(''));
  renameSync(tmp, path);
  return { after, unreadable };
}

/** A run's record as its log.jsonl holds it (lines that are not JSON are passed over; trimLog reports them). */
export function readRunLog(path: string): Omit<LoopResult, 'state'> {
  const r: Omit<LoopResult, 'state'> = { losses: [], validation: [], dataWaitMs: 0, engineMs: 0 };
  if (!existsSync(path)) return r;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    let e: { type?: string; step: number; loss: number; ms?: number; dataWaitMs?: number };
    try {
      e = JSON.parse(line);
    } catch {
      continue;
    }
    if (e.type === 'step') {
      r.losses.push(e.loss);
      r.engineMs += e.ms ?? 0;
      r.dataWaitMs += e.dataWaitMs ?? 0;
    } else if (e.type === 'validation') r.validation.push({ step: e.step, loss: e.loss });
  }
  return r;
}

export async function trainLoop(
  trainer: ContrastiveTrainer, sampler: LoopSampler, data: TokenizedData, validation: StepInput[], o: LoopOptions,
  restoreSampler: (state: unknown) => LoopSampler,
): Promise<LoopResult> {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  mkdirSync(o.outDir, { recursive: true });
  const logPath = join(o.outDir, 'log.jsonl');
  // A run killed while replacing its checkpoint or best model left the previous version aside.
  for (const d of [CKPT, 'best']) for (const line of recoverDir(join(o.outDir, d))) log(line);
  let state: LoopState = { step: 0, sampler: sampler.getState(), bestLoss: null, bestStep: -1, badEvals: 0, stopped: null };
  const resumed = readCheckpoint(o.outDir, trainer, o.runKey, o.earlierRunKeys);
  if (resumed) {
    state = resumed;
    sampler = restoreSampler(state.sampler);
    log(`resuming from ${join(o.outDir, CKPT)} at step ${state.step}`);
    const dropped = trimLog(logPath, state.step);
    if (dropped.after) log(`log.jsonl: dropped ${dropped.after} line(s) after step ${state.step}, written after the checkpoint by the stopped run (they are redone)`);
    if (dropped.unreadable.length) log(`log.jsonl: dropped ${dropped.unreadable.length} line(s) that are not JSON (line ${dropped.unreadable.join(', ')}; a torn last line is what a kill leaves)`);
    if (state.stopped === 'done' || state.stopped === 'early') log('this run had already finished');
  }
  const losses: number[] = [], validationLog: { step: number; loss: number }[] = [];
  let dataWaitMs = 0, engineMs = 0;
  // A resumed run reports the whole run, not just this invocation: the steps and validations
  // before the checkpoint come back from log.jsonl (trimmed to the checkpoint's step above).
  if (resumed) {
    const earlier = readRunLog(logPath);
    losses.push(...earlier.losses);
    validationLog.push(...earlier.validation);
    ({ engineMs, dataWaitMs } = earlier);
  }
  let interrupted = false, lastCheckpoint = resumed ? state.step : 0;
  const onSigint = () => {
    if (interrupted) process.exit(130);  // a second Ctrl-C stops at once
    interrupted = true;
    log('\ninterrupt: finishing the current step and writing a checkpoint (Ctrl-C again to abort)');
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  const progress = new Progress(o.steps, 'train');
  const learned = trainer.loss.learnedScale !== undefined;
  let tokens = 0;
  const t0 = performance.now();

  const validate = async (): Promise<number> => {
    let sum = 0;
    for (const v of validation) sum += (await trainer.evaluate(v)).loss;
    return sum / validation.length;
  };

  try {
    // Each batch with what the step log says of it (which batch type, dataset and language).
    const assemble = () => {
      const b = sampler.next();
      const about = { ...(b.mode ? { batch: b.mode } : {}), ...(b.dataset ? { dataset: b.dataset } : {}), ...(b.language ? { language: b.language } : {}) };
      return { input: assembleBatch(b, data, o.hardNegatives, o.alignmentTexts), about };
    };
    let next = state.stopped ? null : assemble();
    while (next && state.step < o.steps) {
      const step = state.step;
      const lr = linearWarmupDecay(step, o.steps, o.warmupSteps, o.lr);
      const te = performance.now();
      const about = next.about;
      const pending = trainer.step(next.input, lr, stepSeed(o.seed, step));
      // The engine is busy on the thread pool: prepare the next batch meanwhile.
      const td = performance.now();
      const samplerBefore = sampler.getState();
      next = step + 1 < o.steps ? assemble() : null;
      const prepMs = performance.now() - td;
      const r = await pending;
      // A diverged run stops here, before anything of it is logged or saved: the last checkpoint and
      // best/ hold finite weights.
      if (!Number.isFinite(r.loss) || !Number.isFinite(r.gradNorm))
        throw new Error(`step ${step + 1}: the ${Number.isFinite(r.loss) ? 'gradient norm' : 'loss'} is ${Number.isFinite(r.loss) ? r.gradNorm : r.loss} ` +
          `(learning rate ${lr.toPrecision(3)}): training diverged. Nothing of this step was saved; the last checkpoint is ` +
          `${lastCheckpoint ? `step ${lastCheckpoint}'s` : 'none'}. Train again with a lower --lr or a --max-grad-norm (with --overwrite, or another --out)`);
      const stepMs = performance.now() - te;
      engineMs += stepMs;
      // Time the engine would have idled: batch preparation that outlasted the step.
      const wait = Math.max(0, prepMs - (stepMs - prepMs));
      dataWaitMs += wait;
      tokens += r.tokens;
      losses.push(r.loss);
      // The sampler state saved with a checkpoint is the one that reproduces the NEXT batch.
      state = { ...state, step: step + 1, sampler: samplerBefore };
      appendFileSync(logPath, JSON.stringify({
        type: 'step', step: step + 1, loss: r.loss, retrievalLoss: r.retrievalLoss, alignmentLoss: r.alignmentLoss, lr,
        gradNorm: r.gradNorm, tokens: r.tokens, ms: Math.round(stepMs), dataWaitMs: Math.round(wait * 100) / 100,
        ...(learned ? { temperature: r.temperature } : {}), ...about,
      }) + '\n');
      const sec = (performance.now() - t0) / 1000;
      progress.update(state.step, {
        loss: r.loss, 'tok/s': Math.round(tokens / sec), lr: lr.toExponential(1), ...(learned ? { T: 1 / trainer.scale } : {}),
      });

      if (o.evalEvery > 0 && (state.step % o.evalEvery === 0 || state.step === o.steps) && validation.length) {
        const vl = await validate();
        if (!Number.isFinite(vl))
          throw new Error(`step ${state.step}: the validation loss is ${vl}: training diverged; the last checkpoint is ${lastCheckpoint ? `step ${lastCheckpoint}'s` : 'none'}. ` +
            'Train again with a lower --lr or a --max-grad-norm (with --overwrite, or another --out)');
        validationLog.push({ step: state.step, loss: vl });
        const better = state.bestLoss === null || vl < state.bestLoss;
        state = { ...state, bestLoss: better ? vl : state.bestLoss, bestStep: better ? state.step : state.bestStep, badEvals: better ? 0 : state.badEvals + 1 };
        // The validation loss uses the temperature of the moment (learned or fixed).
        if (learned && better) state.bestTemperature = 1 / trainer.scale;
        appendFileSync(logPath, JSON.stringify({
          type: 'validation', step: state.step, loss: vl, best: state.bestLoss, bestStep: state.bestStep,
          ...(learned ? { temperature: 1 / trainer.scale } : {}),
        }) + '\n');
        log(`\nstep ${state.step}: validation loss ${vl.toFixed(4)}${better ? ' (best)' : ` (best ${state.bestLoss!.toFixed(4)} at step ${state.bestStep})`}`);
        if (better) trainer.encoder.save(join(o.outDir, 'best'));  // atomic (saveModelFolder)
        if (o.patience > 0 && state.badEvals >= o.patience) {
          log(`early stopping: no improvement in ${o.patience} validations; best model (step ${state.bestStep}) is in ${join(o.outDir, 'best')}`);
          state.stopped = 'early';
          break;
        }
      }
      const stopNow = interrupted || (o.stopAfter !== undefined && state.step >= o.stopAfter);
      if (state.step % o.checkpointEvery === 0 || stopNow || state.step === o.steps) {
        if (state.step === o.steps) state.stopped = 'done';
        // Sampler state: the batch already drawn into `next` is re-drawn on resume.
        writeCheckpoint(o.outDir, trainer, state, o.runKey, o.defining);
        lastCheckpoint = state.step;
      }
      if (stopNow) {
        state.stopped = 'interrupted';
        log(`\nstopped at step ${state.step}; run the same command again to resume`);
        break;
      }
    }
    if (state.step >= o.steps && !state.stopped) state.stopped = 'done';
    if (state.stopped === 'early') writeCheckpoint(o.outDir, trainer, state, o.runKey, o.defining);
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
  return { state, losses, validation: validationLog, dataWaitMs, engineMs };
}
