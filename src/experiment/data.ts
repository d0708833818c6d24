// What an experiment trains on and evaluates, prepared once in `<out>/data/` before any cell runs:
// - training JSONL (data.files as given; data.lareqa converted to the train side of its article
//   split; data.demo: the groups not held out),
// - the tokenizer of a from-scratch model (`<out>/tokenizer/tokenizer.json`),
// - the evaluation sets, read into memory once and shared by every cell.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { readTrainingData, writeJsonl, type TrainingRecord } from '../data/format.ts';
import { lareqaRecords } from '../data/convert-lareqa.ts';
import { convertTydiqa } from '../data/convert-tydiqa.ts';
import { resolveTatoebaCode, tatoebaCodes, tatoebaPairFiles } from '../data/convert-bitext.ts';
import { canonicalLanguage, TYDI_LANGUAGE_NAMES } from '../data/languages.ts';
import { readLareqaDir, splitArticles } from '../data/lareqa.ts';
import { lareqaSides, type Side } from '../eval/lareqa-eval.ts';
import { buildWordPieceTokenizerJson } from '../tokenizer.ts';
import type { ExperimentConfig } from './config.ts';
import { writeCorpusTokenizer } from './vocab.ts';

export interface LareqaEvalSet {
  kind: 'lareqa';
  name: string;
  dir: string;
  files: Record<string, string>;
  articles: string;
  sides: Side[];
  maxQueryLength?: number;
  maxPassageLength?: number;
}

/** Monolingual retrieval: one pool per language (TyDi QA GoldP). */
export interface MonoEvalSet {
  kind: 'mono';
  name: string;
  dir: string;
  files: Record<string, string>;
  sides: Side[];
  maxQueryLength?: number;
  maxPassageLength?: number;
}

/** Bitext retrieval xxx -> eng (Tatoeba): line i of `src` translates line i of `eng`. */
export interface BitextEvalSet {
  kind: 'bitext';
  name: string;
  dir: string;
  files: Record<string, string>;
  pairs: { code: string; lang: string; src: string[]; eng: string[] }[];
  maxLength?: number;
}

export type EvalSet = LareqaEvalSet | MonoEvalSet | BitextEvalSet;

export interface PreparedData {
  trainFiles: string[];
  /** sha256 over the training files' bytes, in order. */
  trainHash: string;
  /** Languages of the training records (canonical codes), held-out languages removed. */
  trainLanguages: string[];
  /** tokenizer.json for a scratch model (built or given), else undefined (the checkpoint's). */
  tokenizer?: string;
  tokenizerHash?: string;
  /** Training records and bitext lines whose positive passage (text) another group has too. */
  sharedTexts: number;
  evalSets: EvalSet[];
  notes: string[];
}

const sha256 = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');
const fileHash = (p: string) => sha256(readFileSync(p));

function readDemo(file: string): TrainingRecord[] {
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l, i) => {
    try {
      return JSON.parse(l) as TrainingRecord;
    } catch (e) {
      throw new Error(`${file}:${i + 1}: not JSON (${(e as Error).message})`);
    }
  });
}

/** Parallel retrieval sides of records: per language, question = query, its candidate = its positive, linked by group. */
export function recordSides(records: TrainingRecord[]): Side[] {
  const byLang = new Map<string, Side>();
  for (const r of records) {
    let s = byLang.get(r.lang);
    if (!s) byLang.set(r.lang, (s = { lang: r.lang, questions: [], candidates: [] }));
    s.questions.push({ id: r.group, text: r.query, answers: [r.group] });
    s.candidates.push({ key: r.group, text: r.positive });
  }
  return [...byLang.values()];
}

/** TyDi QA GoldP dev of a language: questions, and the distinct gold passages as the pool. */
function tydiSide(dir: string, lang: string): { side: Side; file: string } {
  const name = Object.entries(TYDI_LANGUAGE_NAMES).find(([, code]) => code === canonicalLanguage(lang))?.[0];
  if (!name) throw new Error(`TyDi QA has no language ${lang} (${dir} has ${tydiqaLanguages(dir).join(' ') || 'no <language>_tydiqa_dev.json file'})`);
  const file = join(dir, `${name}_tydiqa_dev.json`);
  if (!existsSync(file)) throw new Error(`TyDi QA: ${file} not found`);
  const { records } = convertTydiqa(file);
  const keyOf = new Map<string, string>();
  const side: Side = { lang: canonicalLanguage(lang), questions: [], candidates: [] };
  for (const r of records) {
    let k = keyOf.get(r.positive);
    if (k === undefined) {
      keyOf.set(r.positive, (k = String(keyOf.size)));
      side.candidates.push({ key: k, text: r.positive });
    }
    side.questions.push({ id: r.group, text: r.query, answers: [k] });
  }
  return { side, file };
}

/** TyDi QA GoldP dev in `dir` (`<language>_tydiqa_dev.json`): one monolingual pool per language. */
export function tydiqaEvalSet(dir: string, languages: string[]): MonoEvalSet {
  const files: Record<string, string> = {};
  const sides = languages.map((l) => {
    const s = tydiSide(dir, l);
    files[s.side.lang] = fileHash(s.file);
    return s.side;
  });
  return { kind: 'mono', name: 'tydiqa', dir, files, sides };
}

/** The TyDi QA languages (canonical codes) whose dev file is in `dir`. */
export function tydiqaLanguages(dir: string): string[] {
  return Object.entries(TYDI_LANGUAGE_NAMES).filter(([name]) => existsSync(join(dir, `${name}_tydiqa_dev.json`))).map(([, code]) => code);
}

/** Tatoeba pairs in `dir` (`tatoeba.<code>-eng.<code>` / `.eng`), by their 3-letter codes. */
export function tatoebaEvalSet(dir: string, codes: string[]): BitextEvalSet {
  const files: Record<string, string> = {};
  const pairs = codes.map((c) => resolveTatoebaCode(dir, c)).map((code) => {
    const [a, b] = tatoebaPairFiles(dir, code);
    for (const f of [a, b]) if (!existsSync(f)) throw new Error(`Tatoeba: ${f} not found`);
    const src = readLines(a), eng = readLines(b);
    if (src.length !== eng.length) throw new Error(`Tatoeba: ${a} has ${src.length} lines but ${b} has ${eng.length} (line i of one translates line i of the other)`);
    files[canonicalLanguage(code)] = sha256(readFileSync(a).toString('binary') + '\0' + readFileSync(b).toString('binary'));
    return { code, lang: canonicalLanguage(code), src, eng };
  });
  const dup = pairs.find((p, i) => pairs.findIndex((q) => q.lang === p.lang) !== i);
  if (dup) throw new Error(`Tatoeba languages: two codes mean ${dup.lang}`);
  return { kind: 'bitext', name: 'tatoeba', dir, files, pairs };
}

export { tatoebaCodes };

function readLines(file: string): string[] {
  const t = readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  const lines = t.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => l.replace(/\r$/, ''));
}

/**
 * Writes the training data and tokenizer into `<dataDir>` and reads the evaluation sets.
 * Deterministic: the same config gives byte-identical files (so cell hashes stay valid on rerun).
 */
export async function prepareData(c: ExperimentConfig, outDir: string, log: (s: string) => void): Promise<PreparedData> {
  const dataDir = join(outDir, 'data');
  mkdirSync(dataDir, { recursive: true });
  const notes: string[] = [];
  const evalSets: EvalSet[] = [];
  let trainFiles: string[];
  let corpus: string[] = [];

  if ('files' in c.data) {
    trainFiles = c.data.files.map((f) => resolve(f));
    const all = await readTrainingData(trainFiles);
    corpus = all.records.flatMap((r) => [r.query, r.positive, ...(r.negatives ?? [])]).concat(all.bitext.map((b) => b.text));
  } else if ('lareqa' in c.data) {
    const l = c.data.lareqa;
    const langs = readLareqaDir(l.dir);
    const { records } = lareqaRecords(langs, {
      dataset: basename(resolve(l.dir)), languages: l.languages, context: l.context,
      split: { keep: 'train', testFraction: l.testFraction, seed: l.splitSeed },
    });
    const f = join(dataDir, 'train.jsonl');
    await writeJsonl(f, records);
    trainFiles = [f];
    corpus = records.flatMap((r) => [r.query, r.positive]);
    notes.push(`training data: ${records.length} pairs from the train side of ${l.dir}'s article split (test fraction ${l.testFraction}, seed ${l.splitSeed})`);
    log(notes[notes.length - 1]);
    if (c.eval.lareqa && !c.eval.lareqa.dir) {
      const e = c.eval.lareqa;
      const wanted = e.languages ?? langs.map((x) => x.lang);
      const files: Record<string, string> = {};
      for (const x of langs) if (wanted.includes(x.lang)) files[x.lang] = fileHash(x.file);
      const sides = lareqaSides(langs.filter((x) => wanted.includes(x.lang)), {
        articles: { side: 'test', testFraction: l.testFraction, seed: l.splitSeed }, context: e.context,
      });
      for (const l2 of wanted) if (!langs.some((x) => x.lang === l2)) throw new Error(`eval.lareqa.languages: ${l2} is not in ${l.dir}`);
      evalSets.push({
        kind: 'lareqa', name: e.bench ?? basename(resolve(l.dir)), dir: l.dir, files, sides,
        articles: `test side of the article split (test fraction ${l.testFraction}, seed ${l.splitSeed})`,
        maxQueryLength: e.maxQueryLength, maxPassageLength: e.maxPassageLength,
      });
    }
  } else {
    const d = c.data.demo;
    const records = readDemo(d.file);
    const groups = [...new Set(records.map((r) => r.group))];
    const { test } = splitArticles(groups, { testFraction: d.testFraction, seed: d.splitSeed });
    const train = records.filter((r) => !test.has(r.group)), held = records.filter((r) => test.has(r.group));
    const f = join(dataDir, 'train.jsonl');
    await writeJsonl(f, train);
    await writeJsonl(join(dataDir, 'held-out.jsonl'), held);
    trainFiles = [f];
    corpus = records.flatMap((r) => [r.query, r.positive]);
    notes.push(`training data: ${groups.length - test.size} groups of ${d.file} (${train.length} pairs); ${test.size} groups held out for evaluation (fraction ${d.testFraction}, seed ${d.splitSeed})`);
    log(notes[notes.length - 1]);
    if (c.eval.demo) {
      // The held-out groups, without the held-out training languages' absence mattering: zero-shot
      // languages are evaluated too (they are what the zero-shot group measures).
      evalSets.push({
        kind: 'lareqa', name: 'demo', dir: d.file, files: { all: fileHash(d.file) }, sides: recordSides(held),
        articles: `${test.size} held-out groups (fraction ${d.testFraction}, seed ${d.splitSeed})`,
        maxQueryLength: c.eval.demo.maxQueryLength, maxPassageLength: c.eval.demo.maxPassageLength,
      });
    }
  }

  if (c.eval.lareqa?.dir) {
    const e = c.eval.lareqa, dir = c.eval.lareqa.dir;
    const langs = readLareqaDir(dir, { languages: e.languages });
    const files: Record<string, string> = {};
    for (const x of langs) files[x.lang] = fileHash(x.file);
    evalSets.unshift({
      kind: 'lareqa', name: e.bench ?? basename(resolve(dir)), dir, files, sides: lareqaSides(langs, { context: e.context }), articles: 'all',
      maxQueryLength: e.maxQueryLength, maxPassageLength: e.maxPassageLength,
    });
  }
  if (c.eval.tydiqa) {
    const e = c.eval.tydiqa;
    evalSets.push({ ...tydiqaEvalSet(e.dir, e.languages), maxQueryLength: e.maxQueryLength, maxPassageLength: e.maxPassageLength });
  }
  if (c.eval.tatoeba) evalSets.push({ ...tatoebaEvalSet(c.eval.tatoeba.dir, c.eval.tatoeba.languages), maxLength: c.eval.tatoeba.maxLength });
  const names = evalSets.map((s) => s.name);
  const dupName = names.find((n, i) => names.indexOf(n) !== i);
  if (dupName) throw new Error(`two evaluation sets are named ${dupName}; set eval.lareqa.bench`);

  // Training languages: what the files hold, held-out languages removed.
  const all = await readTrainingData(trainFiles, { heldOutLanguages: c.heldOutLanguages });
  const trainLanguages = [...new Set(all.records.map((r) => canonicalLanguage(r.lang)))].sort();
  if (!trainLanguages.length) throw new Error(`no training pairs in ${trainFiles.join(', ')} after removing ${c.heldOutLanguages.join(' ') || 'no language'}`);

  let tokenizer: string | undefined;
  if (c.scratch && c.tokenizer) {
    if ('corpus' in c.tokenizer) {
      const t = writeCorpusTokenizer(corpus, join(outDir, 'tokenizer'), { lowercase: c.tokenizer.lowercase, minCount: c.tokenizer.minCount, size: c.tokenizer.size });
      tokenizer = t.tokenizer;
      notes.push(`tokenizer: WordPiece vocabulary of ${t.size} tokens built from the ${corpus.length} texts of the data (${t.vocab})`);
      log(notes[notes.length - 1]);
    } else if (/\.txt$/i.test(c.tokenizer.path)) {
      const lowercase = c.train.lowercase === true;
      mkdirSync(join(outDir, 'tokenizer'), { recursive: true });
      tokenizer = join(outDir, 'tokenizer', 'tokenizer.json');
      writeFileSync(tokenizer, JSON.stringify(buildWordPieceTokenizerJson(c.tokenizer.path, { lowercase })));
      notes.push(`tokenizer: WordPiece from ${c.tokenizer.path}${lowercase ? ' (lowercased)' : ''}`);
    } else tokenizer = c.tokenizer.path;
  }
  return {
    trainFiles, trainHash: sha256(trainFiles.map(fileHash).join('\n')), trainLanguages, tokenizer,
    tokenizerHash: tokenizer ? fileHash(tokenizer) : undefined, evalSets, notes,
    sharedTexts: all.report.warnings.shared_positive.count + all.report.warnings.shared_text.count,
  };
}

/** A fingerprint of an evaluation set's content and options (part of every cell's hash). */
export function evalSetKey(s: EvalSet): unknown {
  const { sides, pairs, ...rest } = s as EvalSet & { sides?: Side[]; pairs?: unknown[] };
  const count = sides ? sides.map((x) => [x.lang, x.questions.length, x.candidates.length, sha256(JSON.stringify(x))]) : undefined;
  const pc = pairs ? (pairs as BitextEvalSet['pairs']).map((p) => [p.lang, p.src.length]) : undefined;
  return { ...rest, dir: undefined, count, pc };
}
