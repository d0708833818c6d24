// The experiment file of `xlir experiment` (YAML or JSON): one base model, one training set, shared
// training options, a list of batching variants, seeds, evaluation sets and language groups. Every
// (variant, seed) pair is a cell, trained by `xlir train` (runTrain) and evaluated on every set.
//
// Paths in the file are relative to the file's own folder; `${VAR}` and `${VAR:-default}` are
// replaced from the environment first (e.g. `${XLIR_SHARED:-../../shared}/data/xquad-r`).
//
//   name: quick                        # default: the file name
//   description: ...
//   model: path/to/checkpoint          # or: scratch: tiny|small|base + tokenizer:
//   scratch: tiny
//   tokenizer: vocab.txt | tokenizer.json | { corpus: true, lowercase: true, size: 8000 }  # size 0: whole words
//   data:                              # exactly one of:
//     files: [train.jsonl]             #   training JSONL (src/data/FORMAT.md)
//     lareqa: { dir, testFraction: 0.5, splitSeed: 0, languages: [...] }  # train side of the article split
//     demo: { file?, testFraction: 0.3, splitSeed: 0 }                     # data/demo, groups held out
//   heldOutLanguages: [el, vi]          # zero-shot: removed from training
//   lowResource: [sw, te, bn]           # the low-resource language group of the report
//   train: { batch-size: 32, steps: 100, lr: 5e-4, ... }   # any `xlir train` option
//   variants:
//     - { name: mono, options: { batching: mono } }
//   seeds: [0, 1, 2]
//   eval:
//     lareqa: { languages?, maxPassageLength? }   # test side of data.lareqa's split (or its own dir)
//     demo: {}                                    # the held-out groups of data.demo
//     tydiqa: { dir, languages: [sw, te, bn] }    # TyDi QA GoldP dev, monolingual (or languages: all)
//     tatoeba: { dir, languages: [swh, tel] }     # bitext retrieval xxx -> eng (or languages: all, 112)
//   reference: true                    # evaluate the untrained base model once
//   significance: { resamples: 10000, seed: 0, pairs?: [[hybrid, x-y]] }
import { existsSync } from 'node:fs';
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readStructuredFile } from '../config-file.ts';
import { SCRATCH_SIZES } from '../train-config.ts';
import { canonicalLanguage, isKnownLanguage } from '../data/languages.ts';
import { tatoebaCodes, tydiqaLanguages } from './data.ts';

/** The repository's data/demo/items.jsonl (the demo set that ships with xlir). */
export const DEMO_ITEMS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'data', 'demo', 'items.jsonl');

export type TrainOptionValue = string | number | boolean | (string | number)[];

export interface Variant {
  name: string;
  options: Record<string, TrainOptionValue>;
}

export type TokenizerSpec = { path: string } | { corpus: true; lowercase: boolean; minCount: number; size: number };

export interface LareqaDataSpec {
  dir: string;
  testFraction: number;
  splitSeed: number;
  languages?: string[];
  context: 'paragraph' | 'none';
}

export interface DemoDataSpec {
  file: string;
  testFraction: number;
  splitSeed: number;
}

export type DataSpec = { files: string[] } | { lareqa: LareqaDataSpec } | { demo: DemoDataSpec };

export interface EvalSpecs {
  /** LAReQA: the test side of data.lareqa's split, or (with dir) another LAReQA folder, all articles. */
  lareqa?: { dir?: string; bench?: string; languages?: string[]; context: 'paragraph' | 'none'; maxQueryLength?: number; maxPassageLength?: number };
  /** The demo's held-out groups (needs data.demo). */
  demo?: { maxQueryLength?: number; maxPassageLength?: number };
  /** TyDi QA GoldP dev files (`<language>_tydiqa_dev.json`), monolingual: one pool per language. */
  tydiqa?: { dir: string; languages: string[]; maxQueryLength?: number; maxPassageLength?: number };
  /** Tatoeba (LASER) bitext: xxx -> eng retrieval among the pair's English sentences. */
  tatoeba?: { dir: string; languages: string[]; maxLength?: number };
}

export interface ExperimentConfig {
  name: string;
  description: string;
  /** The file the config came from ('' when built in code). */
  source: string;
  model?: string;
  scratch?: keyof typeof SCRATCH_SIZES;
  tokenizer?: TokenizerSpec;
  data: DataSpec;
  heldOutLanguages: string[];
  lowResource: string[];
  train: Record<string, TrainOptionValue>;
  variants: Variant[];
  seeds: number[];
  eval: EvalSpecs;
  reference: boolean;
  significance: { resamples: number; seed: number; pairs?: [string, string][] };
  /** Texts per engine call in evaluation. */
  evalBatchSize: number;
  /** Default output folder (CLI --out overrides). */
  out?: string;
}

/** Training options the experiment sets itself; a config may not give them in train/variants. */
const RESERVED = new Set(['data', 'out', 'model', 'scratch', 'tokenizer', 'seed', 'held-out-languages', 'heldOutLanguages', 'overwrite', 'config', 'validation']);

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Replaces ${VAR} and ${VAR:-default} from `env`; an unset variable without a default is an error. */
export function expandEnv(s: string, env: NodeJS.ProcessEnv = process.env, where = ''): string {
  return s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_, name: string, def: string | undefined) => {
    const v = env[name];
    if (v !== undefined && v !== '') return v;
    if (def !== undefined) return def;
    throw new ConfigError(`${where}: environment variable ${name} is not set (write \${${name}:-default} for a default)`);
  });
}

/** Reads and checks an experiment file; paths become absolute (relative to the file's folder). */
export function readExperimentConfig(path: string, env: NodeJS.ProcessEnv = process.env): ExperimentConfig {
  let raw: unknown;
  try {
    raw = readStructuredFile(path, 'experiment file');
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  return checkExperimentConfig(raw, { source: resolve(path), baseDir: dirname(resolve(path)), env, defaultName: basename(path, extname(path)) });
}

/**
 * Checks a config object (as parsed from YAML/JSON, or built in code) and fills in defaults.
 * Errors name the source and the field.
 */
export function checkExperimentConfig(
  raw: unknown,
  ctx: { source?: string; baseDir?: string; env?: NodeJS.ProcessEnv; defaultName?: string } = {},
): ExperimentConfig {
  const src = ctx.source || 'experiment config';
  const baseDir = ctx.baseDir ?? process.cwd();
  const env = ctx.env ?? process.env;
  const fail = (field: string, what: string): never => {
    throw new ConfigError(`${src}: ${field}: ${what}`);
  };
  if (!isObj(raw)) fail('top level', 'expected a mapping');
  const r = raw as Obj;
  const known = ['name', 'description', 'model', 'scratch', 'tokenizer', 'data', 'heldOutLanguages', 'lowResource', 'train', 'variants',
    'seeds', 'eval', 'reference', 'significance', 'evalBatchSize', 'out'];
  for (const k of Object.keys(r)) if (!known.includes(k)) fail(k, `unknown field (known: ${known.join(', ')})`);

  const str = (v: unknown, field: string): string => (typeof v === 'string' && v.trim() !== '' ? v : fail(field, `expected a non-empty string, got ${JSON.stringify(v)}`));
  const path = (v: unknown, field: string): string => {
    const s = expandEnv(str(v, field), env, `${src}: ${field}`);
    return isAbsolute(s) ? s : resolve(baseDir, s);
  };
  const num = (v: unknown, field: string, lo = -Infinity, hi = Infinity): number =>
    typeof v === 'number' && Number.isFinite(v) && v >= lo && v <= hi ? v : fail(field, `expected a number in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
  const int = (v: unknown, field: string, lo = 0): number =>
    Number.isInteger(v) && (v as number) >= lo ? (v as number) : fail(field, `expected an integer >= ${lo}, got ${JSON.stringify(v)}`);
  const langs = (v: unknown, field: string): string[] => {
    if (!Array.isArray(v)) fail(field, `expected a list of language codes, got ${JSON.stringify(v)}`);
    return (v as unknown[]).map((l, i) => {
      const s = str(l, `${field}[${i}]`);
      if (!isKnownLanguage(s)) fail(`${field}[${i}]`, `unknown language code ${JSON.stringify(s)}`);
      return s;
    });
  };
  const optLen = (o: Obj, k: string, field: string) => (o[k] === undefined ? undefined : int(o[k], `${field}.${k}`, 3));
  const only = (o: Obj, keys: string[], field: string) => {
    for (const k of Object.keys(o)) if (!keys.includes(k)) fail(`${field}.${k}`, `unknown field (known: ${keys.join(', ')})`);
  };
  const context = (v: unknown, field: string): 'paragraph' | 'none' =>
    v === undefined ? 'paragraph' : v === 'paragraph' || v === 'none' ? v : fail(field, `expected 'paragraph' or 'none', got ${JSON.stringify(v)}`);

  const name = r.name === undefined ? (ctx.defaultName ?? 'experiment') : str(r.name, 'name');
  if (!/^[A-Za-z0-9._-]+$/.test(name)) fail('name', `use letters, digits, '.', '_' and '-' only (it names folders), got ${JSON.stringify(name)}`);

  // Model
  if ((r.model === undefined) === (r.scratch === undefined)) fail('model', 'give exactly one of model (a checkpoint folder) or scratch (tiny | small | base)');
  const model = r.model === undefined ? undefined : path(r.model, 'model');
  let scratch: ExperimentConfig['scratch'];
  if (r.scratch !== undefined) {
    if (typeof r.scratch !== 'string' || !Object.hasOwn(SCRATCH_SIZES, r.scratch)) fail('scratch', `expected one of ${Object.keys(SCRATCH_SIZES).join(', ')}, got ${JSON.stringify(r.scratch)}`);
    scratch = r.scratch as ExperimentConfig['scratch'];
  }
  let tokenizer: TokenizerSpec | undefined;
  if (r.tokenizer !== undefined) {
    if (isObj(r.tokenizer)) {
      only(r.tokenizer, ['corpus', 'lowercase', 'minCount', 'size'], 'tokenizer');
      if (r.tokenizer.corpus !== true) fail('tokenizer.corpus', 'expected true (a WordPiece vocabulary built from the training data)');
      tokenizer = {
        corpus: true, lowercase: r.tokenizer.lowercase === undefined ? true : r.tokenizer.lowercase === true,
        minCount: r.tokenizer.minCount === undefined ? 1 : int(r.tokenizer.minCount, 'tokenizer.minCount', 1),
        size: r.tokenizer.size === undefined ? 0 : int(r.tokenizer.size, 'tokenizer.size', 0),
      };
    } else tokenizer = { path: path(r.tokenizer, 'tokenizer') };
  }
  if (scratch && !tokenizer) fail('tokenizer', 'a scratch model needs a tokenizer: a vocab.txt, a tokenizer.json or { corpus: true }');
  if (model && tokenizer) fail('tokenizer', 'a checkpoint brings its own tokenizer.json; give tokenizer only with scratch');

  // Data
  if (!isObj(r.data)) fail('data', 'expected a mapping with one of files, lareqa, demo');
  const d = r.data as Obj;
  const kinds = ['files', 'lareqa', 'demo'].filter((k) => d[k] !== undefined);
  if (kinds.length !== 1) fail('data', `give exactly one of files, lareqa, demo (got ${kinds.join(', ') || 'none'})`);
  only(d, ['files', 'lareqa', 'demo'], 'data');
  let data: DataSpec;
  if (d.files !== undefined) {
    const f = Array.isArray(d.files) ? d.files : [d.files];
    if (!f.length) fail('data.files', 'no file');
    data = { files: f.map((x, i) => path(x, `data.files[${i}]`)) };
  } else if (d.lareqa !== undefined) {
    if (!isObj(d.lareqa)) fail('data.lareqa', 'expected a mapping { dir, testFraction, splitSeed, languages? }');
    const l = d.lareqa as Obj;
    only(l, ['dir', 'testFraction', 'splitSeed', 'languages', 'context'], 'data.lareqa');
    data = {
      lareqa: {
        dir: path(l.dir, 'data.lareqa.dir'), testFraction: num(l.testFraction ?? 0.5, 'data.lareqa.testFraction', 0, 0.99),
        splitSeed: int(l.splitSeed ?? 0, 'data.lareqa.splitSeed'), languages: l.languages === undefined ? undefined : langs(l.languages, 'data.lareqa.languages'),
        context: context(l.context, 'data.lareqa.context'),
      },
    };
  } else {
    const l = (d.demo === null || d.demo === true ? {} : d.demo) as Obj;
    if (!isObj(l)) fail('data.demo', 'expected a mapping { file?, testFraction, splitSeed }');
    only(l, ['file', 'testFraction', 'splitSeed'], 'data.demo');
    data = {
      demo: {
        file: l.file === undefined ? DEMO_ITEMS : path(l.file, 'data.demo.file'), testFraction: num(l.testFraction ?? 0.3, 'data.demo.testFraction', 0.01, 0.99),
        splitSeed: int(l.splitSeed ?? 0, 'data.demo.splitSeed'),
      },
    };
  }

  // Training options and variants
  const trainOpts = (v: unknown, field: string): Record<string, TrainOptionValue> => {
    if (v === undefined || v === null) return {};
    if (!isObj(v)) fail(field, 'expected a mapping of `xlir train` option names to values');
    const out: Record<string, TrainOptionValue> = {};
    for (const [k, x] of Object.entries(v as Obj)) {
      if (RESERVED.has(k)) fail(`${field}.${k}`, `set by the experiment (use the top-level ${k === 'held-out-languages' || k === 'heldOutLanguages' ? 'heldOutLanguages' : k === 'seed' ? 'seeds' : k} field)`);
      const ok = typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean' ||
        (Array.isArray(x) && x.every((e) => typeof e === 'string' || typeof e === 'number'));
      if (!ok) fail(`${field}.${k}`, `expected a string, number, boolean or list, got ${JSON.stringify(x)}`);
      out[k] = x as TrainOptionValue;
    }
    return out;
  };
  const train = trainOpts(r.train, 'train');
  if (!Array.isArray(r.variants) || r.variants.length === 0) fail('variants', 'expected a non-empty list of { name, options }');
  const variants = (r.variants as unknown[]).map((v, i): Variant => {
    if (!isObj(v)) fail(`variants[${i}]`, 'expected { name, options }');
    const o = v as Obj;
    only(o, ['name', 'options', 'description'], `variants[${i}]`);
    const n = str(o.name, `variants[${i}].name`);
    if (!/^[A-Za-z0-9._+-]+$/.test(n)) fail(`variants[${i}].name`, `use letters, digits and . _ + - only (it names folders), got ${JSON.stringify(n)}`);
    return { name: n, options: trainOpts(o.options, `variants[${i}].options`) };
  });
  const dupV = variants.find((v, i) => variants.findIndex((w) => w.name === v.name) !== i);
  if (dupV) fail('variants', `the name ${JSON.stringify(dupV.name)} is used twice`);
  if (variants.some((v) => v.name === 'reference')) fail('variants', '"reference" names the untrained base model; pick another name');
  const seeds = r.seeds === undefined ? [0] : Array.isArray(r.seeds) ? (r.seeds as unknown[]).map((s, i) => int(s, `seeds[${i}]`)) : fail('seeds', 'expected a list of integers');
  if (!seeds.length) fail('seeds', 'no seed');
  if (new Set(seeds).size !== seeds.length) fail('seeds', 'a seed is repeated');

  // Evaluation
  if (!isObj(r.eval)) fail('eval', 'expected a mapping with at least one of lareqa, demo, tydiqa, tatoeba');
  const e = r.eval as Obj;
  only(e, ['lareqa', 'demo', 'tydiqa', 'tatoeba'], 'eval');
  const ev: EvalSpecs = {};
  const sub = (k: string): Obj => (e[k] === null || e[k] === true ? {} : isObj(e[k]) ? (e[k] as Obj) : fail(`eval.${k}`, 'expected a mapping'));
  if (e.lareqa !== undefined) {
    const l = sub('lareqa');
    only(l, ['dir', 'bench', 'languages', 'context', 'maxQueryLength', 'maxPassageLength'], 'eval.lareqa');
    if (l.dir === undefined && !('lareqa' in data)) fail('eval.lareqa', 'give dir, or train on data.lareqa (then its test articles are evaluated)');
    ev.lareqa = {
      dir: l.dir === undefined ? undefined : path(l.dir, 'eval.lareqa.dir'), bench: l.bench === undefined ? undefined : str(l.bench, 'eval.lareqa.bench'),
      languages: l.languages === undefined ? undefined : langs(l.languages, 'eval.lareqa.languages'), context: context(l.context, 'eval.lareqa.context'),
      maxQueryLength: optLen(l, 'maxQueryLength', 'eval.lareqa'), maxPassageLength: optLen(l, 'maxPassageLength', 'eval.lareqa'),
    };
  }
  if (e.demo !== undefined) {
    if (!('demo' in data)) fail('eval.demo', 'evaluates the held-out groups of data.demo; train on data.demo');
    const l = sub('demo');
    only(l, ['maxQueryLength', 'maxPassageLength'], 'eval.demo');
    ev.demo = { maxQueryLength: optLen(l, 'maxQueryLength', 'eval.demo'), maxPassageLength: optLen(l, 'maxPassageLength', 'eval.demo') };
  }
  if (e.tydiqa !== undefined) {
    const l = sub('tydiqa');
    only(l, ['dir', 'languages', 'maxQueryLength', 'maxPassageLength'], 'eval.tydiqa');
    const dir = path(l.dir, 'eval.tydiqa.dir');
    ev.tydiqa = {
      dir, languages: l.languages === 'all' ? tydiqaLanguages(dir) : langs(l.languages, 'eval.tydiqa.languages'),
      maxQueryLength: optLen(l, 'maxQueryLength', 'eval.tydiqa'), maxPassageLength: optLen(l, 'maxPassageLength', 'eval.tydiqa'),
    };
    if (!ev.tydiqa.languages.length) fail('eval.tydiqa.languages', l.languages === 'all' ? `no <language>_tydiqa_dev.json in ${dir}` : 'no language');
  }
  if (e.tatoeba !== undefined) {
    const l = sub('tatoeba');
    only(l, ['dir', 'languages', 'maxLength'], 'eval.tatoeba');
    const dir = path(l.dir, 'eval.tatoeba.dir');
    ev.tatoeba = { dir, languages: l.languages === 'all' ? tatoebaCodes(dir) : langs(l.languages, 'eval.tatoeba.languages'), maxLength: optLen(l, 'maxLength', 'eval.tatoeba') };
    if (!ev.tatoeba.languages.length) fail('eval.tatoeba.languages', l.languages === 'all' ? `no tatoeba.xxx-eng.* pairs in ${dir}` : 'no language');
    if (ev.tatoeba.languages.includes('eng')) fail('eval.tatoeba.languages', "'eng' is the target side of every pair; name the other language");
  }
  if (!Object.keys(ev).length) fail('eval', 'no evaluation set');

  const sig = r.significance === undefined ? {} : isObj(r.significance) ? (r.significance as Obj) : fail('significance', 'expected a mapping');
  only(sig, ['resamples', 'seed', 'pairs'], 'significance');
  let pairs: [string, string][] | undefined;
  if (sig.pairs !== undefined) {
    if (!Array.isArray(sig.pairs)) fail('significance.pairs', 'expected a list of [variant, variant]');
    pairs = (sig.pairs as unknown[]).map((p, i) => {
      if (!Array.isArray(p) || p.length !== 2) fail(`significance.pairs[${i}]`, 'expected [variant, variant]');
      const [a, b] = (p as unknown[]).map((x, j) => str(x, `significance.pairs[${i}][${j}]`));
      for (const x of [a, b]) if (x !== 'reference' && !variants.some((v) => v.name === x)) fail(`significance.pairs[${i}]`, `no variant named ${JSON.stringify(x)}`);
      if (a === b) fail(`significance.pairs[${i}]`, 'compares a variant with itself');
      return [a, b];
    });
  }

  return {
    name, description: r.description === undefined ? '' : String(r.description), source: ctx.source ?? '',
    model, scratch, tokenizer, data,
    heldOutLanguages: r.heldOutLanguages === undefined ? [] : langs(r.heldOutLanguages, 'heldOutLanguages'),
    lowResource: r.lowResource === undefined ? [] : langs(r.lowResource, 'lowResource').map(canonicalLanguage),
    train, variants, seeds, eval: ev,
    reference: r.reference === undefined ? true : r.reference === true,
    significance: { resamples: int(sig.resamples ?? 10000, 'significance.resamples', 100), seed: int(sig.seed ?? 0, 'significance.seed'), pairs },
    evalBatchSize: r.evalBatchSize === undefined ? 64 : int(r.evalBatchSize, 'evalBatchSize', 1),
    out: r.out === undefined ? undefined : path(r.out, 'out'),
  };
}

export interface Cell {
  variant: Variant;
  seed: number;
  /** `<variant>-s<seed>`: the cell's folder name under cells/. */
  id: string;
}

/** Cells in running order: seed-major, so an interrupted experiment has whole seeds of every variant first. */
export function expandCells(c: ExperimentConfig): Cell[] {
  return c.seeds.flatMap((seed) => c.variants.map((variant) => ({ variant, seed, id: `${variant.name}-s${seed}` })));
}

/**
 * Cells picked by `--cells`: each pattern is a cell id (`hybrid-s0`), a variant name (`hybrid`,
 * every seed), `s<seed>` (every variant), or a glob with `*`.
 */
export function selectCells(cells: Cell[], patterns: string[] | undefined): Cell[] {
  if (!patterns || !patterns.length) return cells;
  const matchers = patterns.map((p) => {
    const re = new RegExp(`^${p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    return (c: Cell) => re.test(c.id) || c.variant.name === p || `s${c.seed}` === p;
  });
  const picked = cells.filter((c) => matchers.some((m) => m(c)));
  const unmatched = patterns.filter((_, i) => !cells.some((c) => matchers[i](c)));
  if (unmatched.length) throw new ConfigError(`--cells: ${unmatched.map((p) => JSON.stringify(p)).join(', ')} match no cell (cells: ${cells.map((c) => c.id).join(' ')})`);
  return picked;
}

/** `xlir train` arguments for one option mapping (kebab- or camelCase names, as the flags). */
export function optionArgs(o: Record<string, TrainOptionValue>): string[] {
  const args: string[] = [];
  for (const [k, v] of Object.entries(o)) {
    if (typeof v === 'boolean') args.push(v ? `--${k}` : `--no-${k}`);
    else if (Array.isArray(v)) args.push(`--${k}`, ...v.map(String));
    else args.push(`--${k}`, String(v));
  }
  return args;
}

/** Whether `p` exists; for messages that say which data is missing. */
export function missingPaths(c: ExperimentConfig): string[] {
  const p: string[] = [];
  if (c.model) p.push(c.model);
  if (c.tokenizer && 'path' in c.tokenizer) p.push(c.tokenizer.path);
  if ('files' in c.data) p.push(...c.data.files);
  if ('lareqa' in c.data) p.push(c.data.lareqa.dir);
  if ('demo' in c.data) p.push(c.data.demo.file);
  if (c.eval.lareqa?.dir) p.push(c.eval.lareqa.dir);
  if (c.eval.tydiqa) p.push(c.eval.tydiqa.dir);
  if (c.eval.tatoeba) p.push(c.eval.tatoeba.dir);
  return p.filter((x) => !existsSync(x));
}
