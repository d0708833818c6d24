// Options of `xlir train`: one table that yargs turns into flags and --help, a config file (JSON or
// YAML) whose values the flags override, and the resolved, validated TrainConfig the command runs.
// Defaults follow METHOD.md (the paper: AdamW lr 3e-5, weight decay 0.01, batch 100, hybrid alpha
// 0.5, temperature 0.05); what the paper leaves open (lengths, warm-up, precision) is chosen here
// and documented in --help.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { readStructuredFile } from './config-file.ts';
import type { Argv } from 'yargs';

export const BATCHING = ['mono', 'cross', 'hybrid', 'multilingual'] as const;
export type Batching = (typeof BATCHING)[number];
export const ALIGNMENT_TEXTS = ['queries', 'passages'] as const;
export type AlignmentTexts = (typeof ALIGNMENT_TEXTS)[number];
export const SHARED_POSITIVES = ['separate', 'allow'] as const;
export type SharedPositives = (typeof SHARED_POSITIVES)[number];

/** From-scratch model sizes (layers, hidden, heads, FFN); base is the XLM-R/LaBSE shape. */
export const SCRATCH_SIZES = {
  tiny: { numLayers: 2, hiddenSize: 128, numHeads: 2, intermediateSize: 512 },
  small: { numLayers: 4, hiddenSize: 256, numHeads: 4, intermediateSize: 1024 },
  base: { numLayers: 12, hiddenSize: 768, numHeads: 12, intermediateSize: 3072 },
} as const;

export interface TrainConfig {
  data: string[];
  validation: string[];
  validationFraction: number;
  validationBatches: number;
  heldOutLanguages: string[];
  out: string;
  overwrite: boolean;
  model?: string;
  scratch?: keyof typeof SCRATCH_SIZES;
  arch: 'bert' | 'roberta';
  tokenizer?: string;
  lowercase: boolean;
  pooling?: 'cls' | 'mean' | 'pooler';
  batching: Batching;
  alpha: number;
  multilingualFraction: number;
  languageTemperature: number | 'uniform';
  alignmentWeight: number;
  alignmentPairs: number;
  /** What the alignment term compares when it takes its pairs from the records' groups. */
  alignmentTexts: AlignmentTexts;
  /** 'separate': groups with the same positive passage (or bitext text) never share a batch. */
  sharedPositives: SharedPositives;
  batchSize: number;
  subBatchSize: number;
  hardNegatives: number;
  temperature: number;
  /** Learn the temperature (src/temperature.ts), starting from `temperature`. */
  learnTemperature: boolean;
  /** Its learning rate (peak; it follows the model's schedule); default: --lr. */
  temperatureLr: number;
  symmetric: boolean;
  lr: number;
  weightDecay: number;
  warmup: number;
  maxGradNorm: number;
  steps: number;
  epochs: number;
  freezeEmbeddings: boolean;
  sparseEmbeddings: boolean;
  freezeLayers: number;
  maxQueryLength: number;
  maxPassageLength: number;
  queryPrefix: string;
  passagePrefix: string;
  evalEvery: number;
  patience: number;
  checkpointEvery: number;
  precision: 'fp32' | 'bf16';
  device: string;
  /** Device back ends: rebuild each layer's activations in backward instead of keeping them. */
  activationRecompute: boolean;
  threads?: number;
  seed: number;
  cacheDir: string;
}

/** Reads a config file: YAML by extension, JSON otherwise; it must hold a mapping of option names. */
export function readConfigFile(path: string, known?: ReadonlySet<string>): Record<string, unknown> {
  const v = readStructuredFile(path, 'config file');
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`config file ${path}: expected a mapping of option names to values`);
  // Named here, with the file and the nearest option, rather than as yargs' "Unknown arguments" after the help.
  if (known) for (const k of Object.keys(v)) {
    if (known.has(k)) continue;
    const near = nearestName(k, [...known].filter((x) => !/[A-Z]/.test(x)));
    throw new Error(`config file ${path}: unknown option "${k}"${near ? ` (did you mean "${near}"?)` : ''}; the keys are the flags' names (xlir train --help)`);
  }
  return v as Record<string, unknown>;
}

/** The closest of `names` to `k` ignoring case, '-' and '_', when close enough to be a likely typo. */
export function nearestName(k: string, names: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  const d = (a: string, b: string) => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = row[0];
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const cur = row[j];
        row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
        prev = cur;
      }
    }
    return row[b.length];
  };
  let best: string | undefined, bestD = Infinity;
  for (const n of names) {
    const x = d(norm(k), norm(n));
    if (x < bestD) (best = n), (bestD = x);
  }
  return bestD <= Math.max(2, Math.floor(norm(k).length / 4)) ? best : undefined;
}

/**
 * A yargs check: an option given twice (yargs makes an array of it) is an error naming it, unless
 * it takes a list. `arrays`: the options that take lists.
 */
export function refuseRepeatedOptions(argv: Record<string, unknown>, arrays: readonly string[]): true {
  for (const [k, v] of Object.entries(argv)) {
    if (k === '_' || k === '$0' || /[A-Z]/.test(k) || !Array.isArray(v) || arrays.includes(k)) continue;
    throw new Error(`--${k} was given ${v.length} times (${v.map((x) => JSON.stringify(x)).join(', ')}): give it once`);
  }
  return true;
}

export function defaultCacheDir(): string {
  return process.env.XLIR_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'xlir', 'tokens');
}

/** The flags of `xlir train`, grouped for --help. Config-file keys are the same names. */
export function trainOptions<T>(y: Argv<T>) {
  // Option names (and yargs' camelCase forms) known once the options below are defined.
  const known = () => {
    const keys = Object.keys((y as unknown as { getOptions(): { key: Record<string, unknown> } }).getOptions().key);
    return new Set(['config', ...keys, ...keys.map((k) => k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()))]);
  };
  return y
    .config('config', 'JSON or YAML file of options (same names as the flags); flags given on the command line override it',
      (path: string) => readConfigFile(path, known()))
    .group(['data', 'validation', 'validation-fraction', 'validation-batches', 'held-out-languages', 'out', 'overwrite'], 'Data and output:')
    .option('data', { type: 'string', array: true, describe: 'training JSONL files (format: src/data/FORMAT.md)' })
    .option('validation', { type: 'string', array: true, default: [], describe: 'validation JSONL files; none: hold out --validation-fraction of the groups' })
    .option('validation-fraction', { type: 'number', default: 0.05, describe: 'fraction of parallel groups held out for validation when no --validation is given (whole groups, so no translation leaks)' })
    .option('validation-batches', { type: 'number', default: 8, describe: 'fixed validation batches, drawn once with the training batching' })
    .option('held-out-languages', { type: 'string', array: true, default: [], describe: 'languages removed from training entirely (zero-shot evaluation languages), e.g. el vi' })
    .option('out', { type: 'string', describe: 'run folder: checkpoint/, best/, model/ (the selected model), log.jsonl, run.json' })
    .option('overwrite', { type: 'boolean', default: false, describe: 'delete an existing run in --out instead of resuming it' })
    .group(['model', 'scratch', 'arch', 'tokenizer', 'lowercase', 'pooling'], 'Model:')
    .option('model', { type: 'string', describe: 'start from this Hugging Face / sentence-transformers folder' })
    .option('scratch', { choices: Object.keys(SCRATCH_SIZES) as (keyof typeof SCRATCH_SIZES)[], describe: 'or: a randomly initialised encoder of this size (needs --tokenizer)' })
    .option('arch', { choices: ['bert', 'roberta'] as const, default: 'bert' as const, describe: 'architecture of a --scratch model' })
    .option('tokenizer', { type: 'string', describe: 'tokenizer.json, or a WordPiece vocab.txt to build one from (with --scratch)' })
    .option('lowercase', { type: 'boolean', default: false, describe: 'lowercase (and strip accents) when building from vocab.txt' })
    .option('pooling', { choices: ['cls', 'mean', 'pooler'] as const, describe: 'sentence pooling (default: the folder\'s; mean for --scratch)' })
    .group(['batching', 'alpha', 'multilingual-fraction', 'language-temperature', 'alignment-weight', 'alignment-pairs', 'alignment-texts', 'shared-positives', 'batch-size', 'sub-batch-size', 'hard-negatives'], 'Batches (METHOD.md sections 3-4):')
    .option('batching', { choices: BATCHING, default: 'hybrid' as const, describe: 'mono: X-X-mono batches; cross: X-Y; hybrid: mono with probability --alpha, else X-Y; multilingual: query and passage languages drawn independently' })
    .option('alpha', { type: 'number', default: 0.5, describe: 'probability of a mono batch in hybrid batching (the paper: 0.5)' })
    .option('multilingual-fraction', { type: 'number', default: 0, describe: 'with hybrid: fraction of batches that are multilingual instead' })
    .option('language-temperature', { type: 'string', default: 'uniform', describe: "'uniform' (the paper), or T: p(language) ~ n^(1/T); T=1 proportional to size" })
    .option('alignment-weight', { type: 'number', default: 0, describe: 'weight of the parallel-alignment InfoNCE term (0: off)' })
    .option('alignment-pairs', { type: 'number', default: 0, describe: 'translation pairs per batch for the alignment term (0 with a weight > 0: the batch size)' })
    .option('alignment-texts', { choices: ALIGNMENT_TEXTS, default: 'queries' as const, describe: 'what the alignment term pairs when it draws translations from the records\' groups: their queries, or their positive passages (bitext lines, when the data has them, are used instead of either)' })
    .option('shared-positives', { choices: SHARED_POSITIVES, default: 'separate' as const, describe: 'separate: two pairs with the same positive passage in a language (several questions about one sentence, as in XQuAD-R and TyDi QA), or two bitext lines with the same text, never share a batch, where each would be a false negative of the other; allow: batches ignore it, as xlir did before this option' })
    .option('batch-size', { type: 'number', default: 100, describe: 'triplets per batch (the paper: 100); memory does not grow with it, see --sub-batch-size' })
    .option('sub-batch-size', { type: 'number', default: 64, describe: 'sequences per engine pass (gradient caching); 0: the whole batch at once' })
    .option('hard-negatives', { type: 'number', default: 0, describe: 'hard negatives per query, from the records\' negatives' })
    .group(['temperature', 'learn-temperature', 'temperature-lr', 'symmetric', 'lr', 'weight-decay', 'warmup', 'max-grad-norm', 'steps', 'epochs', 'freeze-embeddings', 'sparse-embeddings', 'freeze-layers'], 'Optimisation:')
    .option('temperature', { type: 'number', default: 0.05, describe: 'InfoNCE temperature (scale = 1/temperature); with --learn-temperature, its starting value' })
    .option('learn-temperature', {
      type: 'boolean', default: false,
      describe: 'learn the temperature as CLIP does: Adam on ln(1/temperature), clamped to temperatures in [0.01, 1], no weight decay, outside gradient clipping; logged per step and recorded in run.json',
    })
    .option('temperature-lr', { type: 'number', describe: 'peak learning rate of the learned temperature, on the model\'s schedule (default: --lr, as CLIP; at fine-tuning rates like 3e-5 it barely moves)' })
    .option('symmetric', { type: 'boolean', default: false, describe: 'add the passage-to-query InfoNCE term' })
    .option('lr', { type: 'number', default: 3e-5, describe: 'peak learning rate (AdamW)' })
    .option('weight-decay', { type: 'number', default: 0.01, describe: 'decoupled weight decay (not on biases and LayerNorm weights)' })
    .option('warmup', { type: 'number', default: 0.1, describe: 'warm-up: a fraction of the steps if < 1, else a number of steps; then linear decay to 0' })
    .option('max-grad-norm', { type: 'number', default: 1, describe: 'global gradient-norm clipping (0: off)' })
    .option('steps', { type: 'number', default: 0, describe: 'optimizer steps (0: from --epochs)' })
    .option('epochs', { type: 'number', default: 1, describe: 'passes over the training groups, when --steps is 0' })
    .option('freeze-embeddings', { type: 'boolean', default: false, describe: 'do not train the word-embedding matrix' })
    .option('sparse-embeddings', {
      type: 'boolean', default: false,
      describe: 'row-sparse AdamW of the word-embedding matrix: only rows of tokens in the batch are updated (untouched rows skip momentum and weight decay, unlike the exact dense update); much cheaper for large vocabularies',
    })
    .option('freeze-layers', { type: 'number', default: 0, describe: 'do not train the lowest k transformer layers' })
    .group(['max-query-length', 'max-passage-length', 'query-prefix', 'passage-prefix'], 'Tokenization:')
    .option('max-query-length', { type: 'number', default: 64, describe: 'tokens per query, special tokens included' })
    .option('max-passage-length', { type: 'number', default: 256, describe: 'tokens per passage, special tokens included' })
    .option('query-prefix', { type: 'string', default: 'Query: ', describe: 'prepended to every query (E5 convention)' })
    .option('passage-prefix', { type: 'string', default: 'Passage: ', describe: 'prepended to every passage' })
    .group(['eval-every', 'patience', 'checkpoint-every', 'precision', 'device', 'activation-recompute', 'threads', 'seed', 'cache-dir'], 'Run:')
    .option('eval-every', { type: 'number', default: 100, describe: 'steps between validation losses (0: none)' })
    .option('patience', { type: 'number', default: 5, describe: 'early stopping after this many validations without improvement (0: never)' })
    .option('checkpoint-every', { type: 'number', default: 200, describe: 'steps between checkpoints (also written on Ctrl-C and at the end)' })
    .option('precision', { choices: ['fp32', 'bf16'] as const, default: 'fp32' as const, describe: 'matrix-product precision (bf16: fp32 master weights and accumulation)' })
    .option('device', { type: 'string', default: 'cpu', describe: "'cpu' or 'cuda:N'" })
    .option('activation-recompute', { type: 'boolean', default: false, describe: 'GPU: keep only layer inputs and recompute activations in backward (less memory, same gradients; the CPU ignores it)' })
    .option('threads', { type: 'number', describe: 'CPU threads (default: all cores)' })
    .option('seed', { type: 'number', default: 0, describe: 'seed of sampling, validation split, initialisation and dropout' })
    .option('cache-dir', { type: 'string', default: defaultCacheDir(), describe: 'token cache folder (env XLIR_CACHE_DIR)' });
}

type Parsed = Awaited<ReturnType<ReturnType<typeof trainOptions>['parseAsync']>>;

const positive = (name: string, v: number) => {
  if (!(Number.isFinite(v) && v > 0)) throw new Error(`--${name} must be a positive number, got ${v}`);
};
const nonNegativeInt = (name: string, v: number) => {
  if (!(Number.isInteger(v) && v >= 0)) throw new Error(`--${name} must be a non-negative integer, got ${v}`);
};

/** Checks the parsed options and turns them into a TrainConfig; errors name the option. */
export function resolveTrainConfig(a: Parsed): TrainConfig {
  const data = a.data ?? [];
  if (!data.length) throw new Error('--data: give at least one training JSONL file (or `data:` in --config)');
  if (!a.out) throw new Error('--out: give the run folder');
  if (!a.model === !a.scratch) throw new Error('give exactly one of --model DIR (a checkpoint) or --scratch SIZE (random initialisation)');
  if (a.scratch && !a.tokenizer) throw new Error('--scratch needs --tokenizer (a tokenizer.json, or a vocab.txt to build a WordPiece one)');
  const lt = String(a['language-temperature']);
  const languageTemperature = lt === 'uniform' ? 'uniform' : Number(lt);
  if (languageTemperature !== 'uniform') positive('language-temperature', languageTemperature);
  if (!(a.alpha >= 0 && a.alpha <= 1)) throw new Error(`--alpha must be in [0, 1], got ${a.alpha}`);
  if (!(a['multilingual-fraction'] >= 0 && a['multilingual-fraction'] <= 1)) throw new Error(`--multilingual-fraction must be in [0, 1], got ${a['multilingual-fraction']}`);
  if (!(a['validation-fraction'] >= 0 && a['validation-fraction'] < 1)) throw new Error(`--validation-fraction must be in [0, 1), got ${a['validation-fraction']}`);
  if (!(a['alignment-weight'] >= 0)) throw new Error(`--alignment-weight must be >= 0, got ${a['alignment-weight']}`);
  positive('temperature', a.temperature);
  if (a['temperature-lr'] !== undefined) {
    if (!a['learn-temperature']) throw new Error('--temperature-lr goes with --learn-temperature');
    positive('temperature-lr', a['temperature-lr']);
  }
  if (a['learn-temperature'] && !(a.temperature >= 0.01 && a.temperature <= 1))
    throw new Error(`--temperature must be in [0.01, 1] to be learned (the learned value is kept there), got ${a.temperature}`);
  positive('lr', a.lr);
  positive('max-query-length', a['max-query-length']);
  positive('max-passage-length', a['max-passage-length']);
  if (!(Number.isInteger(a['batch-size']) && a['batch-size'] >= 2)) throw new Error(`--batch-size must be an integer >= 2, got ${a['batch-size']}`);
  for (const k of ['sub-batch-size', 'hard-negatives', 'steps', 'freeze-layers', 'eval-every', 'patience', 'validation-batches', 'alignment-pairs', 'seed'] as const)
    nonNegativeInt(k, a[k] as number);
  positive('checkpoint-every', a['checkpoint-every']);
  if (!(a.warmup >= 0)) throw new Error(`--warmup must be >= 0, got ${a.warmup}`);
  if (!(a['weight-decay'] >= 0)) throw new Error(`--weight-decay must be >= 0, got ${a['weight-decay']}`);
  if (!(a['max-grad-norm'] >= 0)) throw new Error(`--max-grad-norm must be >= 0 (0: no clipping), got ${a['max-grad-norm']}`);
  if (a.steps === 0) positive('epochs', a.epochs);
  if (a.threads !== undefined) positive('threads', a.threads);
  return {
    data, validation: a.validation ?? [], validationFraction: a['validation-fraction'], validationBatches: a['validation-batches'],
    heldOutLanguages: a['held-out-languages'] ?? [], out: a.out, overwrite: a.overwrite, model: a.model, scratch: a.scratch,
    arch: a.arch, tokenizer: a.tokenizer, lowercase: a.lowercase, pooling: a.pooling, batching: a.batching, alpha: a.alpha,
    multilingualFraction: a['multilingual-fraction'], languageTemperature, alignmentWeight: a['alignment-weight'],
    alignmentPairs: a['alignment-pairs'], batchSize: a['batch-size'], subBatchSize: a['sub-batch-size'],
    hardNegatives: a['hard-negatives'], temperature: a.temperature, symmetric: a.symmetric, lr: a.lr,
    weightDecay: a['weight-decay'], warmup: a.warmup, maxGradNorm: a['max-grad-norm'], steps: a.steps, epochs: a.epochs,
    freezeEmbeddings: a['freeze-embeddings'], sparseEmbeddings: a['sparse-embeddings'], freezeLayers: a['freeze-layers'], maxQueryLength: a['max-query-length'],
    maxPassageLength: a['max-passage-length'], queryPrefix: a['query-prefix'], passagePrefix: a['passage-prefix'],
    evalEvery: a['eval-every'], patience: a.patience, checkpointEvery: a['checkpoint-every'], precision: a.precision,
    device: a.device, activationRecompute: a['activation-recompute'], threads: a.threads, seed: a.seed, cacheDir: a['cache-dir'],
    // Last: options added after runs existed (definingConfigs).
    learnTemperature: a['learn-temperature'], temperatureLr: a['temperature-lr'] ?? a.lr, alignmentTexts: a['alignment-texts'],
    sharedPositives: a['shared-positives'],
  };
}

/**
 * What defines a run's numbers: the configuration without where and how it runs (output folder,
 * threads, cache, device, recompute, checkpoint interval), hashed into the run key that a resumed checkpoint must match
 * and into an experiment cell's key. The first entry is the key written now; the others are the
 * same run as earlier xlir versions wrote it, which are accepted too, so an upgrade does not throw
 * away a half-trained run or a finished experiment cell.
 *
 * Options added after runs existed count only when they differ from their defaults (the
 * temperature's rate only when it is learned), so a run that does not use them has the key it had
 * before they existed. --sparse-embeddings did not follow that rule when it was added: the runs of
 * the versions since then (before --learn-temperature and --alignment-texts) have it in their key
 * at its place among the options, which is the third form. The second is the first with
 * --checkpoint-every, which every key had until it was taken out.
 */
export function definingConfigs(c: TrainConfig): Record<string, unknown>[] {
  // sharedPositives changes batches only where the data has shared passages, so it enters the run
  // key with the data (train-command.ts), and a run on data without them keeps its key.
  const { out: _o, overwrite: _w, threads: _t, cacheDir: _c, device: _d, activationRecompute: _r, sharedPositives: _s, learnTemperature, temperatureLr, alignmentTexts, ...withSparse } = c;
  const { sparseEmbeddings, ...rest } = withSparse;
  const withCheckpointEvery = {
    ...rest, ...(sparseEmbeddings ? { sparseEmbeddings } : {}), ...(learnTemperature ? { learnTemperature, temperatureLr } : {}),
    ...(alignmentTexts !== 'queries' ? { alignmentTexts } : {}),
  };
  // How often checkpoints are written changes no number (a resumed run equals an uninterrupted one),
  // so a run may be resumed with another --checkpoint-every; keys before this version had it.
  const { checkpointEvery: _k, ...now } = withCheckpointEvery;
  return learnTemperature || alignmentTexts !== 'queries' ? [now, withCheckpointEvery] : [now, withCheckpointEvery, withSparse];
}


/** Parses `xlir train` arguments (without the command name) into a TrainConfig; for tests and scripts. */
export async function parseTrainArgs(argv: string[]): Promise<TrainConfig> {
  const { default: yargs } = await import('yargs');
  const y = trainOptions(yargs(argv)).strict().exitProcess(false)
    .check((a) => refuseRepeatedOptions(a, (y as unknown as { getOptions(): { array: string[] } }).getOptions().array), true)
    .fail((msg, err) => {
    throw err ?? new Error(msg);
  });
  return resolveTrainConfig(await y.parseAsync());
}
