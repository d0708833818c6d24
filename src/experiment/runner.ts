// `xlir experiment`: runs every cell (variant x seed) of an experiment file through `xlir train`'s
// runTrain, evaluates each trained model (and the untrained base model once) on every evaluation
// set, and writes one report over all of them.
//
// Output folder:
//   config.json                  the resolved experiment (paths absolute)
//   data/                        training JSONL made from data.lareqa / data.demo
//   tokenizer/                   tokenizer.json (and vocab.txt) of a from-scratch model
//   reference/results.json       the untrained base model's evaluation
//   cells/<variant>-s<seed>/     runTrain's run folder (checkpoint/, model/, log.jsonl, run.json)
//                                + cell.json (the cell's hashes) + results.json (its evaluation)
//   variants/<variant>/<set>/    per variant and LAReQA-style set: the seed-averaged result's report
//   summary.json, report.md, *.svg/png   the experiment's report (report.ts)
//
// Resuming: a cell is finished when its results.json exists and carries the cell's hash (training
// configuration, training data, tokenizer, evaluation sets and options); a finished cell is skipped
// without touching its files. An unfinished cell is handed to runTrain, which resumes from its own
// checkpoint (or finds the run already done and only re-saves the model), then evaluated. A cell
// whose training configuration changed since its folder was made is trained afresh (overwrite).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Encoder } from '../encoder.ts';
import { native, type NativeModelConfig } from '../native.ts';
import { Progress } from '../progress.ts';
import { writeFileAtomic } from '../report/write.ts';
import { readJsonOrNull } from '../json-file.ts';
import { SCRATCH_SIZES, definingConfigs, parseTrainArgs, type TrainConfig } from '../train-config.ts';
import { runTrain } from '../train-command.ts';
import { TextTokenizer } from '../tokenizer.ts';
import { canonicalLanguage } from '../data/languages.ts';
import { expandCells, optionArgs, selectCells, type Cell, type ExperimentConfig } from './config.ts';
import { evalSetKey, prepareData, type EvalSet, type PreparedData } from './data.ts';
import { evaluateAll, type EvalOutcome } from './evaluate.ts';
import { buildSummary, writeExperimentReport, type ExperimentSummary } from './report.ts';

export interface RunExperimentOptions {
  /** Output folder (default: config.out, else runs/experiments/<name>). */
  out?: string;
  /** Only these cells (ids, variant names, s<seed>, globs; see selectCells). The report covers every finished cell. */
  cells?: string[];
  /** Train at most this many unfinished cells in this run, then write the report and stop (the rest wait for a rerun). */
  maxCells?: number;
  threads?: number;
  /** Write the report from the finished cells without training or evaluating anything. */
  reportOnly?: boolean;
  /** PNG pictures: 'auto' (default: when a font is found), true (required), false (SVG only). */
  png?: boolean | 'auto';
  log?: (s: string) => void;
  /** Log of runTrain and the evaluations (default: log). */
  detailLog?: (s: string) => void;
  /** Keep each finished cell's checkpoint/ and best/ (default true); false deletes them after the evaluation (model/ stays). */
  keepCheckpoints?: boolean;
  /** Called after each cell is finished (trained and evaluated) in this run. */
  onCell?: (cell: Cell, results: CellResults) => void;
}

export interface CellResults {
  kind: 'xlir-experiment-cell';
  hash: string;
  trainHash: string;
  id: string;
  variant: string;
  seed: number;
  xlir: string;
  created: string;
  modelDir: string;
  train: { steps: number; stopped: string | null; bestStep: number; bestLoss: number | null; validation: { step: number; loss: number }[]; trainMs: number; engineMs: number; finalLoss: number | null;
    /** With learn-temperature: the temperature at the end of training, and the best model's. */
    learnedTemperature?: number; bestTemperature?: number };
  evalMs: number;
  evals: EvalOutcome[];
}

export interface ExperimentOutcome {
  out: string;
  summary: ExperimentSummary;
  report: string;
  /** Cells trained and evaluated in this run, skipped as finished, and left for a later run. */
  ran: string[];
  skipped: string[];
  pending: string[];
  interrupted: boolean;
}

export class ExperimentInterrupted extends Error {}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** The language groups of an evaluation set (each named group only when non-empty). */
export function languageGroups(langs: string[], trainLanguages: string[], lowResource: string[], heldOut: string[] = []): Record<string, string[]> {
  const g: Record<string, string[]> = {};
  const seen = langs.filter((l) => trainLanguages.includes(l)), zero = langs.filter((l) => !trainLanguages.includes(l));
  const low = langs.filter((l) => lowResource.includes(l)), high = langs.filter((l) => !lowResource.includes(l));
  const held = langs.filter((l) => heldOut.map(canonicalLanguage).includes(l));
  if (seen.length && zero.length) (g.seen = seen), (g['zero-shot'] = zero);
  else if (zero.length) g['zero-shot'] = zero;
  // Held out on purpose, when the zero-shot group also has languages the data never had.
  if (held.length && held.length < zero.length) g['held-out'] = held;
  if (low.length) (g['low-resource'] = low), high.length && (g['high-resource'] = high);
  return g;
}

function setLanguages(s: EvalSet): string[] {
  return s.kind === 'bitext' ? s.pairs.map((p) => p.lang) : s.sides.map((x) => x.lang);
}

/** The `xlir train` configuration of a cell. */
export async function cellTrainConfig(c: ExperimentConfig, data: PreparedData, cell: { variant: Cell['variant']; seed: number }, dir: string): Promise<TrainConfig> {
  const args = ['--data', ...data.trainFiles, '--out', dir, '--seed', String(cell.seed)];
  if (c.model) args.push('--model', c.model);
  else args.push('--scratch', c.scratch!, '--tokenizer', data.tokenizer!);
  if (c.heldOutLanguages.length) args.push('--held-out-languages', ...c.heldOutLanguages);
  args.push(...optionArgs(c.train), ...optionArgs(cell.variant.options));
  try {
    return await parseTrainArgs(args);
  } catch (e) {
    throw new Error(`variant ${cell.variant.name}: ${(e as Error).message}`);
  }
}

/**
 * What defines a trained model (run folder, threads, cache, device left out) plus the data behind
 * it: the key written now first, then the same cell's key as earlier xlir versions wrote it
 * (train-config.ts definingConfigs), so that their finished cells are still recognised.
 */
function trainKeys(t: TrainConfig, data: PreparedData): string[] {
  // Batches that keep groups sharing a passage apart differ only where the data has such groups.
  const separated = t.sharedPositives === 'separate' && data.sharedTexts > 0;
  return definingConfigs(t).map((d) => {
    const { data: _f, tokenizer: _k, ...defining } = d;
    return sha256(JSON.stringify({ defining, train: data.trainHash, tokenizer: data.tokenizerHash ?? null, ...(separated ? { separated: true } : {}) }));
  });
}

function evalKey(t: TrainConfig, data: PreparedData, c: ExperimentConfig, groups: Record<string, Record<string, string[]>>): string {
  return sha256(JSON.stringify({
    sets: data.evalSets.map(evalSetKey), groups, batch: c.evalBatchSize,
    q: [t.queryPrefix, t.passagePrefix, t.maxQueryLength, t.maxPassageLength],
  }));
}

/** The untrained model a scratch run starts from (the same weights as runTrain's at that seed). */
function scratchModelConfig(t: TrainConfig, tokenizer: string): NativeModelConfig {
  const tok = TextTokenizer.fromFile(tokenizer);
  const roberta = t.arch === 'roberta';
  const pooling = t.pooling ?? 'mean';
  return {
    arch: t.arch, vocabSize: tok.vocabSize, ...SCRATCH_SIZES[t.scratch!], maxPositions: roberta ? 514 : 512, typeVocabSize: roberta ? 1 : 2,
    layerNormEps: roberta ? 1e-5 : 1e-12, padTokenId: tok.padId, hiddenDropout: 0.1, attentionDropout: 0.1, pooling,
    hasPooler: pooling === 'pooler', normalize: true, seed: t.seed,
  };
}

export function defaultOut(c: ExperimentConfig): string {
  return c.out ?? join('runs', 'experiments', c.name);
}

export async function runExperiment(c: ExperimentConfig, o: RunExperimentOptions = {}): Promise<ExperimentOutcome> {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const detail = o.detailLog ?? log;
  const out = resolve(o.out ?? defaultOut(c));
  if (o.threads) native().setNumThreads(o.threads);
  mkdirSync(out, { recursive: true });
  const t0 = performance.now();
  const xlir = native().info().version;
  await writeFileAtomic(join(out, 'config.json'), JSON.stringify(c, null, 2) + '\n');

  const data = await prepareData(c, out, log);
  const groups: Record<string, Record<string, string[]>> = {};
  for (const s of data.evalSets) groups[s.name] = languageGroups(setLanguages(s), data.trainLanguages, c.lowResource, c.heldOutLanguages);

  const all = expandCells(c);
  const picked = new Set(selectCells(all, o.cells).map((x) => x.id));
  const ran: string[] = [], skipped: string[] = [], pending: string[] = [];
  let interrupted = false;

  // Base training configuration (first seed, first variant): evaluation options of the reference.
  const base = await cellTrainConfig(c, data, { variant: c.variants[0], seed: c.seeds[0] }, join(out, 'reference'));
  const evalOpts = (t: TrainConfig, modelPath: string, modelName: string, seed: number) => ({
    queryPrefix: t.queryPrefix, passagePrefix: t.passagePrefix, maxQueryLength: t.maxQueryLength, maxPassageLength: t.maxPassageLength,
    batchSize: c.evalBatchSize, seed, modelPath, modelName, log: detail,
  });
  const evaluate = async (enc: Encoder, t: TrainConfig, modelPath: string, modelName: string, seed: number) => {
    const outcomes: EvalOutcome[] = [];
    for (const s of data.evalSets) outcomes.push(...(await evaluateAll(enc, [s], { ...evalOpts(t, modelPath, modelName, seed), groups: groups[s.name] })));
    return outcomes;
  };

  // The untrained base model, evaluated once.
  if (c.reference && !o.reportOnly) {
    const dir = join(out, 'reference');
    const hash = sha256(JSON.stringify({ model: c.model ?? null, scratch: c.scratch ? scratchModelConfig(base, data.tokenizer!) : null, tokenizer: data.tokenizerHash ?? null, eval: evalKey(base, data, c, groups) }));
    const prev = readJsonOrNull<CellResults>(join(dir, 'results.json'));
    if (prev?.hash === hash) log('reference (untrained base model): finished earlier, skipped');
    else {
      log(`reference: evaluating the untrained base model (${c.model ?? `random ${c.scratch}, seed ${base.seed}`})`);
      mkdirSync(dir, { recursive: true });
      const t1 = performance.now();
      const enc = c.model ? Encoder.load(c.model) : Encoder.create(scratchModelConfig(base, data.tokenizer!), { tokenizerPath: data.tokenizer });
      try {
        const modelDir = c.model ?? join(dir, 'model');
        if (!c.model) enc.save(modelDir);
        const evals = await evaluate(enc, base, modelDir, 'untrained', base.seed);
        const r: CellResults = {
          kind: 'xlir-experiment-cell', hash, trainHash: '', id: 'reference', variant: 'reference', seed: base.seed, xlir, created: new Date().toISOString(),
          modelDir, train: { steps: 0, stopped: null, bestStep: -1, bestLoss: null, validation: [], trainMs: 0, engineMs: 0, finalLoss: null },
          evalMs: performance.now() - t1, evals,
        };
        await writeFileAtomic(join(dir, 'results.json'), JSON.stringify(r) + '\n');
      } finally {
        enc.dispose();
      }
    }
  }

  const todo = all.filter((x) => picked.has(x.id));
  const bar = new Progress(todo.length, 'experiment', process.stderr, 0);
  let trained = 0, done = 0;
  for (const cell of todo) {
    if (o.reportOnly) break;
    const dir = join(out, 'cells', cell.id);
    const t = await cellTrainConfig(c, data, cell, dir);
    const tks = trainKeys(t, data), ek = evalKey(t, data, c, groups);
    const tk = tks[0], hashes = tks.map((k) => sha256(JSON.stringify({ train: k, eval: ek }))), hash = hashes[0];
    const prev = readJsonOrNull<CellResults>(join(dir, 'results.json'));
    if (prev && hashes.includes(prev.hash)) {
      log(`cell ${cell.id}: finished earlier (results.json matches), skipped`);
      skipped.push(cell.id);
      bar.update(++done, { cell: cell.id });
      continue;
    }
    if (o.maxCells !== undefined && trained >= o.maxCells) {
      pending.push(cell.id);
      continue;
    }
    const meta = readJsonOrNull<{ trainHash: string }>(join(dir, 'cell.json'));
    const overwrite = meta !== null && !tks.includes(meta.trainHash);
    if (overwrite) log(`cell ${cell.id}: its training configuration changed since ${dir} was made; training afresh`);
    else if (existsSync(join(dir, 'checkpoint'))) log(`cell ${cell.id}: resuming its run`);
    log(`cell ${cell.id} (${done + 1}/${todo.length}): training ${cell.variant.name}, seed ${cell.seed}`);
    const t1 = performance.now();
    if (overwrite) rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    // Written first, so that a run killed during training still tells the next one what it was.
    await writeFileAtomic(join(dir, 'cell.json'), JSON.stringify({ id: cell.id, trainHash: tk, hash }, null, 1) + '\n');
    const train = await runTrain(t, detail);
    if (train.result.state.stopped === 'interrupted') {
      interrupted = true;
      pending.push(cell.id);
      log(`cell ${cell.id}: interrupted at step ${train.result.state.step}; run the same command again to resume`);
      break;
    }
    const trainMs = performance.now() - t1;
    log(`cell ${cell.id}: evaluating`);
    const t2 = performance.now();
    const enc = Encoder.load(train.modelDir);
    let evals: EvalOutcome[];
    try {
      evals = await evaluate(enc, t, train.modelDir, `${cell.variant.name} seed ${cell.seed}`, cell.seed);
    } finally {
      enc.dispose();
    }
    const st = train.result.state;
    const losses = train.result.losses;
    const r: CellResults = {
      kind: 'xlir-experiment-cell', hash, trainHash: tk, id: cell.id, variant: cell.variant.name, seed: cell.seed, xlir, created: new Date().toISOString(),
      modelDir: train.modelDir,
      train: {
        steps: st.step, stopped: st.stopped, bestStep: st.bestStep, bestLoss: st.bestLoss, validation: train.result.validation, trainMs,
        engineMs: train.result.engineMs, finalLoss: losses.length ? losses.slice(-10).reduce((a, b) => a + b, 0) / Math.min(10, losses.length) : null,
        learnedTemperature: train.learnedTemperature, bestTemperature: st.bestTemperature,
      },
      evalMs: performance.now() - t2, evals,
    };
    await writeFileAtomic(join(dir, 'results.json'), JSON.stringify(r) + '\n');
    if (o.keepCheckpoints === false) for (const d of ['checkpoint', 'best']) rmSync(join(dir, d), { recursive: true, force: true });
    log(`cell ${cell.id}: done (training ${(trainMs / 1000).toFixed(1)} s, evaluation ${(r.evalMs / 1000).toFixed(1)} s)`);
    ran.push(cell.id);
    trained++;
    bar.update(++done, { cell: cell.id });
    o.onCell?.(cell, r);
  }
  if (o.reportOnly) for (const x of todo) pending.push(x.id);

  // The report: every finished cell of the experiment (selected or not) with a current hash.
  const results: CellResults[] = [];
  for (const cell of all) {
    const dir = join(out, 'cells', cell.id);
    const r = readJsonOrNull<CellResults>(join(dir, 'results.json'));
    if (!r) continue;
    if (!o.reportOnly) {
      const t = await cellTrainConfig(c, data, cell, dir);
      const ek = evalKey(t, data, c, groups);
      if (!trainKeys(t, data).some((k) => sha256(JSON.stringify({ train: k, eval: ek })) === r.hash)) {
        log(`cell ${cell.id}: results.json is from another configuration; left out of the report`);
        continue;
      }
    }
    results.push(r);
  }
  const reference = c.reference ? readJsonOrNull<CellResults>(join(out, 'reference', 'results.json')) : null;
  const summary = buildSummary(c, data, groups, results, reference, { out, xlir, ms: performance.now() - t0, cells: all.map((x) => x.id) });
  const report = await writeExperimentReport(summary, results, reference, out, { png: o.png, log });
  log(`report: ${report} (${results.length}/${all.length} cells${pending.length ? `; ${pending.length} left for a later run: ${pending.join(' ')}` : ''})`);
  return { out, summary, report, ran, skipped, pending, interrupted };
}
