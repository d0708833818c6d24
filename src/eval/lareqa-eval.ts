// LAReQA evaluation (XQuAD-R, MLQA-R; METHOD.md section 5) of one encoder: encode every question
// and every candidate of every language once, score each query language against the union pool of
// all languages (one blockwise matrix product in the engine), and read the monolingual,
// cross-lingual and multilingual settings off the same score rows: a pool language's setting is
// its slice of the union row. AP is exact over the full pool (no cut-off).
//
// A question counts in a setting only where it has a correct candidate in the pool language (every
// XQuAD-R question does; an MLQA-R question is absent from some languages).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Encoder } from '../encoder.ts';
import { native } from '../native.ts';
import { Progress } from '../progress.ts';
import { candidateText, readLareqaDir, splitArticles, type LareqaLanguage } from '../data/lareqa.ts';
import { rankDistanceFromRanks, recallFromRanks, rowMetrics, SettingAverager, summarizeSettings, MULTILINGUAL_POOL } from './metrics.ts';
import type { LareqaResult } from '../report/types.ts';

export interface LareqaEvalOptions extends EncodeRunOptions {
  dir: string;
  bench: string;
  languages?: string[];
  /** Evaluate only the articles of one side of splitArticles(testFraction, seed). */
  articles?: { side: 'test' | 'train'; testFraction: number; seed: number };
  context: 'paragraph' | 'none';
  groups?: Record<string, string[]>;
}

/** How any evaluation encodes its texts, and what it records about the run. */
export interface EncodeRunOptions {
  maxQueryLength: number;
  maxPassageLength: number;
  queryPrefix: string;
  passagePrefix: string;
  batchSize: number;
  seed: number;
  modelPath: string;
  log?: (s: string) => void;
}

/**
 * One query's values: AP against each pool language (in the result's `languages` order; null where
 * the query has no correct candidate there), and in the multilingual pool.
 */
export interface PerQuery {
  lang: string;
  id: string;
  ap: (number | null)[];
  multiAp: number;
  r10: number;
  rankDistance: number | null;
}

/** One language of a parallel retrieval set: its questions and its candidate pool. */
export interface Side {
  lang: string;
  questions: { id: string; text: string; answers: string[] }[];
  candidates: { key: string; text: string }[];
}

/** The questions and candidates evaluated: a language's whole file, or the articles of one split side. */
export function lareqaSides(langs: LareqaLanguage[], o: Pick<LareqaEvalOptions, 'articles' | 'context'>): Side[] {
  let keep: ((article: string) => boolean) = () => true;
  if (o.articles) {
    const all = langs.flatMap((l) => [...l.questions.map((q) => q.article), ...l.candidates.map((c) => c.article)]);
    const split = splitArticles(all, o.articles);
    const side = split[o.articles.side];
    keep = (a) => side.has(a);
  }
  return langs.map((l) => ({
    lang: l.lang,
    questions: l.questions.filter((q) => keep(q.article)).map((q) => ({ id: q.id, text: q.text, answers: q.answers })),
    candidates: l.candidates.filter((c) => keep(c.article)).map((c) => ({ key: c.key, text: candidateText(c, o.context) })),
  }));
}

export async function evaluateLareqa(enc: Encoder, o: LareqaEvalOptions): Promise<LareqaResult & { perQuery: PerQuery[] }> {
  const langs = readLareqaDir(o.dir, { languages: o.languages });
  // Questions the reader drops as the reference does (no sentence holds the answer start): said, with the file.
  for (const l of langs) {
    const q = l.issues.questionsWithoutAnswerSentence;
    if (q.length) o.log?.(`note: ${l.file}: ${q.length} question(s) left out, no sentence contains the answer start (as the LAReQA reference does): ${q.slice(0, 5).join(', ')}${q.length > 5 ? ' ...' : ''}`);
  }
  const files: Record<string, string> = {};
  for (const l of langs) files[l.lang] = createHash('sha256').update(readFileSync(l.file)).digest('hex');
  return evaluateRetrieval(enc, lareqaSides(langs, o), {
    ...o, files,
    articles: o.articles ? `${o.articles.side} side of the article split (test fraction ${o.articles.testFraction}, seed ${o.articles.seed})` : 'all',
  });
}

export type RetrievalEvalOptions = Omit<LareqaEvalOptions, 'articles' | 'languages' | 'context'> & {
  files: Record<string, string>;
  articles: string;
  context?: string;
};

/**
 * The LAReQA protocol on any parallel retrieval set: a question's correct candidates in each
 * language are those whose keys its `answers` name, linked across languages by question id.
 */
export async function evaluateRetrieval(enc: Encoder, sides: Side[], o: RetrievalEvalOptions): Promise<LareqaResult & { perQuery: PerQuery[] }> {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const t0 = performance.now();
  for (const s of sides)
    if (!s.questions.length || !s.candidates.length) throw new Error(`${o.bench} ${s.lang}: no questions or no candidates to evaluate (empty pool)`);
  const D = enc.embeddingDim;

  // Encoding: all questions, then all candidates, language by language.
  const nQ = sides.reduce((n, s) => n + s.questions.length, 0), nC = sides.reduce((n, s) => n + s.candidates.length, 0);
  const progress = new Progress(nQ + nC, 'encode');
  let done = 0;
  const enc1 = async (texts: string[], maxLength: number, prefix: string) => {
    const base = done;
    const e = await enc.encodeTexts(texts, { maxLength, prefix, batchSize: o.batchSize, onProgress: (d) => progress.update(base + d, {}) });
    done += texts.length;
    return e;
  };
  const qEmb: Float32Array[] = [];
  for (const s of sides) qEmb.push(await enc1(s.questions.map((q) => q.text), o.maxQueryLength, o.queryPrefix));
  const pool = new Float32Array(nC * D);
  const poolStart: number[] = [];
  let at = 0;
  for (const s of sides) {
    poolStart.push(at);
    pool.set(await enc1(s.candidates.map((c) => c.text), o.maxPassageLength, o.passagePrefix), at * D);
    at += s.candidates.length;
  }
  const t1 = performance.now();

  // Relevance: question id -> its correct candidates' indices in the union pool, per pool language.
  const relevant = new Map<string, number[][]>();  // id -> [pool language index] -> union indices
  sides.forEach((s, li) => {
    const idx = new Map(s.candidates.map((c, i) => [c.key, poolStart[li] + i]));
    for (const q of s.questions) {
      let r = relevant.get(q.id);
      if (!r) relevant.set(q.id, (r = sides.map(() => [])));
      for (const k of q.answers) {
        const u = idx.get(k);
        if (u === undefined) throw new Error(`${o.bench} ${s.lang}: question ${q.id}'s answer candidate ${k} is not in the pool`);
        if (!r[li].includes(u)) r[li].push(u);
      }
    }
  });

  const ap = new SettingAverager(), r1 = new SettingAverager(), r10 = new SettingAverager(), rd = new SettingAverager();
  // Per-query values, for paired significance tests between models on the same queries.
  const perQuery: PerQuery[] = [];
  let searchMs = 0, metricsMs = 0;
  for (let qi = 0; qi < sides.length; qi++) {
    const s = sides[qi], nq = s.questions.length;
    const ts = performance.now();
    const scores = await native().scoreMatrix(qEmb[qi], pool, D);
    const tm = performance.now();
    searchMs += tm - ts;
    for (let i = 0; i < nq; i++) {
      const row = scores.subarray(i * nC, (i + 1) * nC);
      const rel = relevant.get(s.questions[i].id)!;
      const pq: PerQuery = { lang: s.lang, id: s.questions[i].id, ap: sides.map(() => null), multiAp: 0, r10: 0, rankDistance: null };
      perQuery.push(pq);
      for (let pi = 0; pi < sides.length; pi++) {
        if (!rel[pi].length) continue;
        const lo = poolStart[pi];
        const m = rowMetrics(row.subarray(lo, lo + sides[pi].candidates.length), rel[pi].map((u) => u - lo));
        pq.ap[pi] = m.averagePrecision;
        ap.add(s.lang, sides[pi].lang, m.averagePrecision);
        r1.add(s.lang, sides[pi].lang, recallFromRanks(m.ranks, 1));
      }
      // Multilingual pool: every language's correct candidates are relevant.
      const all = rel.flat();
      const m = rowMetrics(row, all);
      ap.add(s.lang, MULTILINGUAL_POOL, m.averagePrecision);
      r10.add(s.lang, MULTILINGUAL_POOL, recallFromRanks(m.ranks, 10));
      pq.multiAp = m.averagePrecision;
      pq.r10 = recallFromRanks(m.ranks, 10);
      // Rank distance over the parallel candidates, one per language: with several correct
      // candidates in a language (MLQA-R), its best-ranked one.
      const best: number[] = [];
      let k = 0;
      for (const r of rel) {
        if (!r.length) continue;
        best.push(Math.min(...m.ranks.slice(k, k + r.length)));
        k += r.length;
      }
      if (best.length >= 2) rd.add(s.lang, MULTILINGUAL_POOL, (pq.rankDistance = rankDistanceFromRanks(best)));
    }
    metricsMs += performance.now() - tm;
  }

  const names = sides.map((s) => s.lang);
  const apM = ap.matrix(), r1M = r1.matrix(), rdM = rd.matrix(), r10M = r10.matrix();
  const cell = (m: Map<string, Map<string, number>>, q: string, p: string) => m.get(q)?.get(p) ?? NaN;
  const apS = summarizeSettings(apM), r1S = summarizeSettings(r1M);
  const multilingual: LareqaResult['multilingual'] = {};
  for (const l of names)
    multilingual[l] = {
      map: cell(apM, l, MULTILINGUAL_POOL), r10: cell(r10M, l, MULTILINGUAL_POOL), rankDistance: cell(rdM, l, MULTILINGUAL_POOL),
      queries: ap.count(l, MULTILINGUAL_POOL),
    };
  const macro = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const totalMs = performance.now() - t0;
  log(`${o.bench}: encoded ${nQ} questions and ${nC} candidates in ${((t1 - t0) / 1000).toFixed(1)} s; ` +
    `scores ${(searchMs / 1000).toFixed(2)} s, metrics ${(metricsMs / 1000).toFixed(2)} s`);
  return {
    kind: 'lareqa', xlir: native().info().version, bench: o.bench, created: new Date().toISOString(), seed: o.seed,
    model: { path: o.modelPath },
    data: { dir: o.dir, files: o.files, articles: o.articles },
    options: { context: o.context, maxQueryLength: o.maxQueryLength, maxPassageLength: o.maxPassageLength, queryPrefix: o.queryPrefix, passagePrefix: o.passagePrefix },
    languages: names,
    summary: {
      mono: { map: apS.mono!, r1: r1S.mono! }, cross: { map: apS.cross ?? NaN, r1: r1S.cross ?? NaN },
      multi: { map: apS.multilingual!, r10: macro(names.map((l) => multilingual[l].r10)) },
      rankDistance: macro(names.map((l) => multilingual[l].rankDistance).filter((x) => !Number.isNaN(x))),
    },
    matrix: { map: names.map((q) => names.map((p) => cell(apM, q, p))), r1: names.map((q) => names.map((p) => cell(r1M, q, p))) },
    multilingual,
    counts: {
      questions: Object.fromEntries(sides.map((s) => [s.lang, s.questions.length])),
      candidates: Object.fromEntries(sides.map((s) => [s.lang, s.candidates.length])),
    },
    timing: { encodeMs: t1 - t0, searchMs, metricsMs, totalMs },
    ...(o.groups ? { groups: o.groups } : {}),
    perQuery,
  };
}
