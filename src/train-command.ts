// `xlir train`: JSONL data -> validation split -> token cache -> batch sampler -> gradient-cached
// InfoNCE training loop -> the selected model in the Hugging Face / sentence-transformers layout.
//
// Run folder (--out):
//   run.json        the resolved configuration, seed, xlir version, data report; updated at the end
//   data-report.json what the reader kept, skipped (with counts and examples) and held out
//   log.jsonl       every step and validation (train-loop.ts)
//   checkpoint/     model + optimizer + sampler + counters, written atomically; rerunning resumes
//   best/           the model with the lowest validation loss so far
//   model/          the selected model: best/ when validation ran, else the last weights
//   tokenizer.json  when built from a vocab.txt
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Encoder, checkDevice } from './encoder.ts';
import { native, type NativeModelConfig } from './native.ts';
import { ContrastiveTrainer } from './trainer.ts';
import { LearnedScale } from './temperature.ts';
import { recoverDir, replaceDir, tmpDirFor } from './atomic-dir.ts';
import { tokenizeAll, type TokenStore } from './token-cache.ts';
import { canonicalLanguage } from './data/languages.ts';
import { assembleBatch, assertSameRun, assertSameSettings, checkpointRunKey, readRunLog, runKey, trainLoop, type LoopResult, type TokenizedData } from './train-loop.ts';
import { readJsonOrNull } from './json-file.ts';
import { readTrainingData, type BitextRecord, type ReadReport, type TrainingRecord } from './data/format.ts';
import { BatchSampler, type SamplerOptions } from './sampler.ts';
import { buildWordPieceTokenizerJson, TextTokenizer } from './tokenizer.ts';
import { SCRATCH_SIZES, definingConfigs, type TrainConfig } from './train-config.ts';

export interface TrainSummary {
  out: string;
  modelDir: string;
  steps: number;
  result: LoopResult;
  /** With --learn-temperature: the temperature at the end of training. */
  learnedTemperature?: number;
}

/** Records and bitext of one split, tokenized. */
interface Split {
  records: TrainingRecord[];
  bitext: BitextRecord[];
  data: TokenizedData;
}

function writeJsonAtomic(path: string, v: unknown): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(v, null, 1) + '\n');
  renameSync(tmp, path);
}

/** Seeded, order-independent assignment of whole groups to validation (a translation never leaks). */
export function isValidationGroup(group: string, seed: number, fraction: number): boolean {
  if (fraction <= 0) return false;
  const h = createHash('sha256').update(`${seed}\u0000${group}`).digest();
  return h.readUInt32LE(0) / 2 ** 32 < fraction;
}

function summarizeReport(r: ReadReport): string {
  const skipped = Object.entries(r.skipped).filter(([, v]) => v.count > 0).map(([k, v]) => `${k} ${v.count}`);
  const warned = Object.entries(r.warnings).filter(([, v]) => v.count > 0).map(([k, v]) => `${k} ${v.count}`);
  const langs = Object.entries(r.kept.byLanguage).map(([k, v]) => `${k} ${v}`).join(', ');
  return `read ${r.lines} lines from ${r.files.length} file(s): kept ${r.kept.records} pairs and ${r.kept.bitext} bitext sentences (${langs})` +
    (r.heldOut.records + r.heldOut.bitext ? `; held out ${r.heldOut.records + r.heldOut.bitext} (${Object.keys(r.heldOut.byLanguage).join(' ')})` : '') +
    (skipped.length ? `; skipped ${r.skippedTotal}: ${skipped.join(', ')}` : '') +
    (warned.length ? `; warnings: ${warned.join(', ')}` : '') +
    (r.skippedTotal || warned.length ? ' (details in data-report.json)' : '');
}

function scratchConfig(c: TrainConfig, tok: TextTokenizer): NativeModelConfig {
  const size = SCRATCH_SIZES[c.scratch!];
  const roberta = c.arch === 'roberta';
  if (tok.padId < 0) throw new Error(`${c.tokenizer}: the tokenizer has no padding token ([PAD] or <pad>)`);
  const pooling = c.pooling ?? 'mean';
  return {
    arch: c.arch, vocabSize: tok.vocabSize, ...size,
    // RoBERTa's position ids start after padding_idx, hence 2 more positions for 512 tokens.
    maxPositions: roberta ? 514 : 512, typeVocabSize: roberta ? 1 : 2, layerNormEps: roberta ? 1e-5 : 1e-12,
    padTokenId: tok.padId, hiddenDropout: 0.1, attentionDropout: 0.1, pooling, hasPooler: pooling === 'pooler',
    normalize: true, seed: c.seed,
  };
}

function openEncoder(c: TrainConfig, log: (s: string) => void): Encoder {
  if (c.model) {
    const enc = Encoder.load(c.model, { precision: c.precision, device: c.device, pooling: c.pooling, seed: c.seed });
    if (!enc.tokenizer) throw new Error(`${c.model}: no tokenizer.json in the model folder (needed to tokenize the training data)`);
    log(`model: ${c.model} (${enc.config.arch}, ${enc.config.numLayers} layers, hidden ${enc.config.hiddenSize}, pooling ${enc.config.pooling})`);
    return enc;
  }
  let tokPath = c.tokenizer!;
  if (/\.txt$/i.test(tokPath)) {
    const built = join(c.out, 'tokenizer.json');
    writeFileSync(built, JSON.stringify(buildWordPieceTokenizerJson(tokPath, { lowercase: c.lowercase })));
    log(`tokenizer: WordPiece built from ${tokPath} -> ${built}`);
    tokPath = built;
  }
  const cfg = scratchConfig(c, TextTokenizer.fromFile(tokPath));
  log(`model: random ${c.scratch} ${c.arch} (${cfg.numLayers} layers, hidden ${cfg.hiddenSize}, vocabulary ${cfg.vocabSize}), seed ${c.seed}`);
  return Encoder.create(cfg, { tokenizerPath: tokPath, precision: c.precision, device: c.device });
}

async function tokenizeSplit(records: TrainingRecord[], bitext: BitextRecord[], c: TrainConfig, tokenizerPath: string): Promise<TokenizedData> {
  // Query store: the records' queries, then the bitext sentences (the alignment term's texts, which
  // play the role of queries: short, prefixed alike). Passage store: positives, then negatives.
  const queryTexts = [...records.map((r) => r.query), ...bitext.map((b) => b.text)];
  const passageTexts = records.map((r) => r.positive);
  const negatives = records.map((r) => {
    const at = passageTexts.length;
    for (const n of r.negatives ?? []) passageTexts.push(n);
    return Int32Array.from({ length: r.negatives?.length ?? 0 }, (_, k) => at + k);
  });
  const common = { tokenizerPath, cacheDir: c.cacheDir };
  const queries: TokenStore = await tokenizeAll(queryTexts, { ...common, maxLength: c.maxQueryLength, prefix: c.queryPrefix });
  const passages: TokenStore = await tokenizeAll(passageTexts, { ...common, maxLength: c.maxPassageLength, prefix: c.passagePrefix });
  return { queries, passages, negatives };
}

export function samplerOptions(c: TrainConfig, seed: number, batchSize = c.batchSize): SamplerOptions {
  return {
    batchSize, seed, mode: c.batching, alpha: c.alpha, multilingualFraction: c.multilingualFraction,
    languageTemperature: c.languageTemperature, heldOutLanguages: c.heldOutLanguages,
    alignmentPairs: c.alignmentWeight > 0 ? (c.alignmentPairs || c.batchSize) : 0,
  };
}

// The sampler's view of the data; with --shared-positives separate, a pair's positive passage (and a
// bitext line's text) in its language is its conflict key: two groups that share one never meet in
// a batch (sampler.ts).
const items = (s: { records: TrainingRecord[]; bitext: BitextRecord[] }, separate: boolean) => ({
  records: s.records.map(({ group, lang, dataset, positive }) => ({ group, lang, dataset, ...(separate ? { conflict: `${lang}\u0000${positive}` } : {}) })),
  bitext: s.bitext.map(({ group, lang, dataset, text }) => ({ group, lang, dataset, ...(separate ? { conflict: `${lang}\u0000${text}` } : {}) })),
});

export async function runTrain(c: TrainConfig, log: (s: string) => void = (s) => process.stderr.write(s + '\n')): Promise<TrainSummary> {
  checkDevice(c.device);
  if (c.threads) native().setNumThreads(c.threads);
  if (existsSync(c.out) && !statSync(c.out).isDirectory()) throw new Error(`--out ${c.out}: exists and is not a folder (a run folder holds checkpoint/, model/, log.jsonl, ...)`);
  refuseIfInUse(c.out);  // before --overwrite deletes anything
  if (c.overwrite) rmSync(c.out, { recursive: true, force: true });
  mkdirSync(c.out, { recursive: true });
  const releaseLock = lockRunFolder(c.out);
  try {
    return await trainInFolder(c, log);
  } finally {
    releaseLock();
  }
}

const LOCK = 'lock';

/** The pid in `out`/lock when that process is alive (and not this one), else null. */
function lockHolder(out: string): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(join(out, LOCK), 'utf8').trim());
  } catch {
    return null;
  }
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : null;  // EPERM: alive, another user's
  }
}

function refuseIfInUse(out: string): void {
  const pid = lockHolder(out);
  if (pid !== null) throw new Error(`${out} is in use by another xlir train (process ${pid}): two runs in one folder would overwrite each other's checkpoints; wait for it, stop it, or use another --out`);
}

/**
 * Marks `out` as this process's (out/lock holds its pid) until the returned function is called; a
 * lock left by a process that no longer runs (killed) is taken over.
 */
function lockRunFolder(out: string): () => void {
  const path = join(out, LOCK);
  try {
    writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });  // atomic: of two runs starting at once, one gets it
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    refuseIfInUse(out);
    writeFileSync(path, `${process.pid}\n`);  // a dead process's lock
  }
  return () => {
    try {
      if (readFileSync(path, 'utf8').trim() === String(process.pid)) rmSync(path, { force: true });
    } catch {
      // already gone
    }
  };
}

async function trainInFolder(c: TrainConfig, log: (s: string) => void): Promise<TrainSummary> {
  const version = native().info().version;
  // A rerun with other settings is refused before it reads the data or writes a file, so that the
  // run it refuses keeps its run.json, data-report.json and tokenizer.json.
  for (const line of recoverDir(join(c.out, 'checkpoint'))) log(line);
  const definings = definingConfigs(c);
  assertSameSettings(c.out, definings);

  // Data: held-out languages never reach the sampler; validation takes whole groups.
  const all = await readTrainingData(c.data, { heldOutLanguages: c.heldOutLanguages });
  log(summarizeReport(all.report));
  const reports: Record<string, ReadReport> = { train: all.report };
  let train: Omit<Split, 'data'>, val: Omit<Split, 'data'>;
  if (c.validation.length) {
    const v = await readTrainingData(c.validation, { heldOutLanguages: c.heldOutLanguages });
    log(`validation: ${summarizeReport(v.report)}`);
    reports.validation = v.report;
    train = all;
    val = v;
  } else {
    const inVal = (g: string) => isValidationGroup(g, c.seed, c.validationFraction);
    train = { records: all.records.filter((r) => !inVal(r.group)), bitext: all.bitext.filter((b) => !inVal(b.group)) };
    val = { records: all.records.filter((r) => inVal(r.group)), bitext: all.bitext.filter((b) => inVal(b.group)) };
    log(`validation: ${val.records.length} pairs held out (${(c.validationFraction * 100).toFixed(1)}% of the groups, seed ${c.seed})`);
  }
  if (c.hardNegatives > 0 && !train.records.some((r) => r.negatives?.length))
    throw new Error(`--hard-negatives ${c.hardNegatives}: no training pair has "negatives" (xlir convert lareqa --hard-negatives k writes them; src/data/FORMAT.md)`);
  const heldOut = new Set(Object.keys(all.report.heldOut.byLanguage).map(canonicalLanguage));
  const absent = c.heldOutLanguages.filter((l) => !heldOut.has(canonicalLanguage(l)));
  if (absent.length) log(`note: --held-out-languages ${absent.join(' ')}: not in the training data, so holding ${absent.length > 1 ? 'them' : 'it'} out changes nothing`);
  if (!train.records.length) {
    const fresh = !existsSync(join(c.out, 'checkpoint'));
    if (fresh) writeJsonAtomic(join(c.out, 'data-report.json'), reports);
    throw new Error(`no training pairs left in ${c.data.join(', ')} (the counts are above${fresh ? ` and in ${join(c.out, 'data-report.json')}` : ''})`);
  }

  const enc = openEncoder(c, log);
  try {
    enc.model.setFrozen({ freezeWordEmbeddings: c.freezeEmbeddings, freezeLayers: c.freezeLayers });
    enc.model.setActivationRecompute(c.activationRecompute);
    if (enc.model.device !== 'cpu') {
      const info = native().info();
      log(`device: ${enc.model.device}${enc.model.device.startsWith('cuda') ? ` (${info.cudaReason})` : ''}, ` +
        `${(enc.model.deviceBytes / 2 ** 30).toFixed(2)} GiB of device memory for the model` +
        (c.activationRecompute ? ', activations recomputed in backward' : ''));
    }
    const tokenizerPath = enc.tokenizerPath!;
    const t0 = performance.now();
    const trainData = await tokenizeSplit(train.records, train.bitext, c, tokenizerPath);
    const valData = val.records.length ? await tokenizeSplit(val.records, val.bitext, c, tokenizerPath) : undefined;
    log(`tokens: ${trainData.queries.ids.length + trainData.passages.ids.length} training tokens ` +
      `(${trainData.queries.fromCache && trainData.passages.fromCache ? 'from the cache' : 'tokenized'} in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);

    const separate = c.sharedPositives === 'separate';
    const trainItems = items(train, separate);
    let sampler = new BatchSampler(trainItems, samplerOptions(c, c.seed));
    if (sampler.separatedGroups) log(`batches: ${sampler.separatedGroups} groups share a positive passage (or bitext text) with another; no batch holds two of them (--shared-positives allow lets it)`);
    for (const d of sampler.monoOnlyDatasets) log(`batches: dataset ${d} has too few translated pairs for X-Y batches; its X-Y draws are mono batches`);
    // An epoch uses each parallel group once (sampler.ts), so it is groups / batch size batches.
    const batchesPerEpoch = Math.max(1, Math.floor(new Set(train.records.map((r) => `${r.dataset}\u0000${r.group}`)).size / c.batchSize));
    const steps = c.steps || Math.max(1, Math.ceil(c.epochs * batchesPerEpoch));
    const warmupSteps = c.warmup < 1 ? Math.round(c.warmup * steps) : Math.round(c.warmup);

    // Validation: a fixed set of batches drawn once, with the training batching, from the held-out
    // groups; smaller than training batches when the split is small (a mono batch needs that many
    // groups in one language), which changes the loss's scale but not its use for model selection.
    const validation = [];
    if (valData && c.evalEvery > 0 && c.validationBatches > 0) {
      const perLang = new Map<string, number>();
      for (const r of val.records) perLang.set(r.lang, (perLang.get(r.lang) ?? 0) + 1);
      const vb = Math.min(c.batchSize, ...perLang.values());
      if (vb < 2) log(`validation: too few held-out groups for a batch (${val.records.length} pairs); no validation`);
      else {
        // Alignment pairs come from distinct groups, so a small split allows fewer of them.
        const vo = samplerOptions(c, c.seed + 1, vb);
        vo.alignmentPairs = Math.min(vo.alignmentPairs ?? 0, vb);
        const vs = new BatchSampler(items(val, separate), vo);
        for (let i = 0; i < c.validationBatches; i++) validation.push(assembleBatch(vs.next(), valData, c.hardNegatives, c.alignmentTexts));
        if (vb < c.batchSize) log(`validation: batches of ${vb} (the smallest language of the held-out groups)`);
      }
    }

    const adam = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    const learnedScale = c.learnTemperature ? new LearnedScale(1 / c.temperature, { ...adam, lrRatio: c.temperatureLr / c.lr }) : undefined;
    const trainer = new ContrastiveTrainer(enc, { ...adam, weightDecay: c.weightDecay, maxGradNorm: c.maxGradNorm, sparseEmbeddings: c.sparseEmbeddings },
      { scale: 1 / c.temperature, symmetric: c.symmetric, alignmentWeight: c.alignmentWeight, learnedScale }, c.subBatchSize);
    // Everything that defines the run's numbers; a checkpoint of another run is refused on resume.
    const keysOf = (separated: number) => definings.map((defining) => runKey({
      defining, steps, train: [trainData.queries.key, trainData.passages.key], val: valData && [valData.queries.key, valData.passages.key],
      // Only where groups were kept apart, so that other runs keep the keys they had before.
      ...(separated ? { separated } : {}),
    }));
    const [key, ...earlierKeys] = keysOf(sampler.separatedGroups);
    // Nothing of this run is written until its checkpoint, if any, is known to be this run's.
    const had = checkpointRunKey(c.out);
    if (had !== null && sampler.separatedGroups && ![key, ...earlierKeys].includes(had) && keysOf(0).includes(had))
      throw new Error(`${join(c.out, 'checkpoint')} was written by a run whose batches could hold two pairs with the same positive passage; ` +
        'resume it with --shared-positives allow, or start afresh with --overwrite');
    assertSameRun(c.out, key, earlierKeys);
    // No checkpoint, but a log of steps: a finished run whose checkpoint was removed (experiments
    // remove them) is reported as it finished; anything else cannot resume and is not restarted
    // over its own history.
    if (!existsSync(join(c.out, 'checkpoint', 'state.json'))) {
      const logged = readRunLog(join(c.out, 'log.jsonl'));
      if (logged.losses.length) {
        const prev = readJsonOrNull<Record<string, unknown>>(join(c.out, 'run.json'));
        const mine = prev !== null && [key, ...earlierKeys].includes(prev.runKey as string);
        if (mine && prev.finished && existsSync(join(c.out, 'model', 'config.json'))) {
          log(`this run had already finished (${join(c.out, 'model')}; its checkpoint was removed)`);
          return {
            out: c.out, modelDir: join(c.out, 'model'), steps, result: { state: prev.state as LoopResult['state'], ...logged },
            learnedTemperature: prev.learnedTemperature as number | undefined,
          };
        }
        throw new Error(`${c.out}: log.jsonl records ${logged.losses.length} steps but there is no checkpoint to resume them from (${join(c.out, 'checkpoint')} is missing): ` +
          'use --overwrite to start afresh, or another --out folder');
      }
    }
    writeJsonAtomic(join(c.out, 'data-report.json'), reports);
    const now = new Date().toISOString();
    const resuming = existsSync(join(c.out, 'checkpoint', 'state.json'));
    const before = resuming ? readJsonOrNull<Record<string, unknown>>(join(c.out, 'run.json')) : null;
    const same = before !== null && [key, ...earlierKeys].includes(before.runKey as string);
    const run = {
      xlir: version, seed: c.seed, runKey: key, steps, warmupSteps, config: c,
      // A resumed run keeps its start; each resumption is listed.
      started: same ? before.started : now, ...(resuming ? { resumed: [...(same && Array.isArray(before.resumed) ? before.resumed : []), now] } : {}),
    };
    writeJsonAtomic(join(c.out, 'run.json'), run);
    // Every model folder this run saves (best/, model/, the checkpoint's) tells evaluation and
    // sentence-transformers which inputs it was trained on (src/input-defaults.ts).
    enc.saveDefaults = {
      prompts: { query: c.queryPrefix, passage: c.passagePrefix },
      maxSeqLength: Math.max(c.maxQueryLength, c.maxPassageLength),
      training: {
        queryPrefix: c.queryPrefix, passagePrefix: c.passagePrefix, maxQueryLength: c.maxQueryLength, maxPassageLength: c.maxPassageLength,
        run: { runKey: key, seed: c.seed, steps, xlir: version, data: c.data, out: c.out },
      },
    };
    log(`training: ${steps} steps of ${c.batchSize} (${c.batching}${c.batching === 'hybrid' ? `, alpha ${c.alpha}` : ''}), ` +
      `${batchesPerEpoch} batches per epoch, ${validation.length} validation batches, seed ${c.seed}` +
      (learnedScale ? `; temperature learned from ${c.temperature} (peak lr ${c.temperatureLr})` : '') +
      // The sampler takes alignment pairs from the bitext when there is any (sampler.ts).
      (c.alignmentWeight > 0 ? `; alignment term (weight ${c.alignmentWeight}) on ${train.bitext.length ? 'bitext translations' +
        (c.alignmentTexts !== 'queries' ? ` (--alignment-texts ${c.alignmentTexts} applies only without bitext)` : '') : `translated ${c.alignmentTexts}`}` : ''));

    const result = await trainLoop(trainer, sampler, trainData, validation, {
      outDir: c.out, steps, warmupSteps, lr: c.lr, seed: c.seed, hardNegatives: c.hardNegatives, alignmentTexts: c.alignmentTexts, evalEvery: validation.length ? c.evalEvery : 0,
      patience: c.patience, checkpointEvery: c.checkpointEvery, runKey: key, earlierRunKeys: earlierKeys, defining: definings[0], log,
    }, (state) => (sampler = BatchSampler.restore(trainItems, samplerOptions(c, c.seed), state)));

    const modelDir = join(c.out, 'model');
    if (result.state.stopped !== 'interrupted') {
      for (const line of recoverDir(modelDir)) log(line);
      if (existsSync(join(c.out, 'best'))) {
        const tmp = tmpDirFor(modelDir);
        rmSync(tmp, { recursive: true, force: true });
        cpSync(join(c.out, 'best'), tmp, { recursive: true });
        replaceDir(tmp, modelDir);
      } else enc.save(modelDir);  // atomic (saveModelFolder)
      const v = result.validation.map((x) => x.loss);
      log(`saved ${modelDir} (${existsSync(join(c.out, 'best')) ? `best validation loss ${result.state.bestLoss?.toFixed(4)} at step ${result.state.bestStep}` : 'last step'})` +
        (v.length ? `; validation loss ${v[0].toFixed(4)} -> ${v[v.length - 1].toFixed(4)}` : '') +
        `; engine waited ${result.dataWaitMs.toFixed(0)} ms for data in ${(result.engineMs / 1000).toFixed(1)} s of steps` +
        (learnedScale ? `; learned temperature ${learnedScale.temperature.toPrecision(4)}` : ''));
    }
    const prev = JSON.parse(readFileSync(join(c.out, 'run.json'), 'utf8'));
    writeJsonAtomic(join(c.out, 'run.json'), {
      ...prev, finished: new Date().toISOString(), state: result.state, validation: result.validation,
      ...(learnedScale ? { learnedTemperature: learnedScale.temperature } : {}),
      dataWaitMs: result.dataWaitMs, engineMs: result.engineMs,
    });
    return { out: c.out, modelDir, steps, result, learnedTemperature: learnedScale?.temperature };
  } finally {
    enc.dispose();
  }
}
