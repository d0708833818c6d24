// Evaluation of one encoder on an experiment's evaluation sets, in a form that can be averaged over
// seeds and tested query by query:
// - 'lareqa' (XQuAD-R test articles, the demo's held-out groups): the LAReQA protocol of
//   src/eval/lareqa-eval.ts (mono / cross / multilingual mAP, R@1, R@10, rank distance);
// - 'mono' (TyDi QA GoldP dev): each language its own pool; mAP, R@1, R@10;
// - 'bitext' (Tatoeba): for each xxx sentence, its translation among all the pair's English
//   sentences; accuracy@1 and mAP (one relevant sentence: mAP = MRR), ties ranked pessimistically;
//   also eng -> xxx (BITEXT_REVERSE_METRICS, shown by `xlir eval` but not in experiment reports).
// Each outcome keeps its per-query values (AP and friends), the input of the paired bootstrap.
import type { Encoder } from '../encoder.ts';
import { native } from '../native.ts';
import { evaluateRetrieval } from '../eval/lareqa-eval.ts';
import { rowMetrics } from '../eval/metrics.ts';
import { aggregate } from '../report/aggregate.ts';
import type { LareqaResult } from '../report/types.ts';
import type { EvalSet } from './data.ts';

export type EvalKind = 'lareqa' | 'mono' | 'bitext';

/** Per-query values, column-wise (JSON-compact): NaN is written as null. */
export interface PerQueryColumns {
  lang: string[];
  id: string[];
  values: Record<string, (number | null)[]>;
}

export interface EvalOutcome {
  name: string;
  kind: EvalKind;
  languages: string[];
  /** The LAReQA result ('lareqa' kind), without its per-query list. */
  result?: LareqaResult;
  /** 'mono' and 'bitext': metric -> value per language. */
  perLanguage?: Record<string, Record<string, number>>;
  perQuery: PerQueryColumns;
  ms: number;
}

/** Summary metrics of each kind, in report order; `lower` ones are better when smaller. */
export const SUMMARY_METRICS: Record<EvalKind, { name: string; lower?: boolean; rank?: boolean }[]> = {
  lareqa: [
    { name: 'mono mAP' }, { name: 'cross mAP' }, { name: 'multi mAP' }, { name: 'mono R@1' }, { name: 'cross R@1' }, { name: 'multi R@10' },
    { name: 'rank distance', lower: true, rank: true },
  ],
  mono: [{ name: 'mAP' }, { name: 'R@1' }, { name: 'R@10' }],
  bitext: [{ name: 'acc@1' }, { name: 'mAP' }],
};

/**
 * Tatoeba's other direction, per language beside the summary metrics but kept out of experiment
 * reports (cells evaluated before it existed lack it): each English sentence against all the
 * pair's xxx sentences, and the mean of the two directions' accuracy (the primary metric of
 * sentence-transformers' TranslationEvaluator, which breaks ties optimistically where we do not).
 */
export const BITEXT_REVERSE_METRICS = [{ name: 'acc@1 eng->xxx' }, { name: 'mAP eng->xxx' }, { name: 'acc@1 both directions' }];

/** Per-query metrics of each kind (paired tests). */
export const QUERY_METRICS: Record<EvalKind, { name: string; lower?: boolean }[]> = {
  lareqa: [{ name: 'multi AP' }, { name: 'cross AP' }, { name: 'mono AP' }, { name: 'rank distance', lower: true }],
  mono: [{ name: 'AP' }],
  bitext: [{ name: 'AP' }],
};

export interface EvalRunOptions {
  queryPrefix: string;
  passagePrefix: string;
  maxQueryLength: number;
  maxPassageLength: number;
  batchSize: number;
  seed: number;
  modelPath: string;
  modelName: string;
  groups?: Record<string, string[]>;
  log: (s: string) => void;
}

const mean = (xs: number[]) => {
  const v = xs.filter((x) => !Number.isNaN(x));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
};

export async function evaluateAll(enc: Encoder, sets: EvalSet[], o: EvalRunOptions): Promise<EvalOutcome[]> {
  const out: EvalOutcome[] = [];
  for (const s of sets) {
    const t0 = performance.now();
    if (s.kind === 'lareqa') {
      const { perQuery, ...result } = await evaluateRetrieval(enc, s.sides, {
        bench: s.name, dir: s.dir, files: s.files, articles: s.articles, context: 'paragraph',
        maxQueryLength: s.maxQueryLength ?? o.maxQueryLength, maxPassageLength: s.maxPassageLength ?? o.maxPassageLength,
        queryPrefix: o.queryPrefix, passagePrefix: o.passagePrefix, batchSize: o.batchSize, seed: o.seed, modelPath: o.modelPath,
        groups: o.groups, log: o.log,
      });
      result.model.name = o.modelName;
      const L = result.languages;
      const pq: PerQueryColumns = { lang: [], id: [], values: { 'multi AP': [], 'cross AP': [], 'mono AP': [], 'rank distance': [] } };
      for (const q of perQuery) {
        const self = L.indexOf(q.lang);
        const cross = q.ap.filter((x, i) => i !== self && x !== null) as number[];
        pq.lang.push(q.lang);
        pq.id.push(q.id);
        pq.values['multi AP'].push(q.multiAp);
        pq.values['cross AP'].push(cross.length ? mean(cross) : null);
        pq.values['mono AP'].push(q.ap[self]);
        pq.values['rank distance'].push(q.rankDistance);
      }
      out.push({ name: s.name, kind: 'lareqa', languages: L, result, perQuery: pq, ms: performance.now() - t0 });
    } else if (s.kind === 'mono') {
      const perLanguage: Record<string, Record<string, number>> = {};
      const pq: PerQueryColumns = { lang: [], id: [], values: { AP: [] } };
      for (const side of s.sides) {
        const r = await evaluateRetrieval(enc, [side], {
          bench: `${s.name} ${side.lang}`, dir: s.dir, files: { [side.lang]: s.files[side.lang] }, articles: 'all',
          maxQueryLength: s.maxQueryLength ?? o.maxQueryLength, maxPassageLength: s.maxPassageLength ?? o.maxPassageLength,
          queryPrefix: o.queryPrefix, passagePrefix: o.passagePrefix, batchSize: o.batchSize, seed: o.seed, modelPath: o.modelPath, log: o.log,
        });
        perLanguage[side.lang] = {
          mAP: r.summary.mono.map, 'R@1': r.summary.mono.r1, 'R@10': r.multilingual[side.lang].r10,
          queries: side.questions.length, candidates: side.candidates.length,
        };
        for (const q of r.perQuery) {
          pq.lang.push(q.lang);
          pq.id.push(q.id);
          pq.values.AP.push(q.ap[0]);
        }
      }
      out.push({ name: s.name, kind: 'mono', languages: s.sides.map((x) => x.lang), perLanguage, perQuery: pq, ms: performance.now() - t0 });
    } else {
      const perLanguage: Record<string, Record<string, number>> = {};
      const pq: PerQueryColumns = { lang: [], id: [], values: { AP: [] } };
      const D = enc.embeddingDim;
      const maxLength = s.maxLength ?? o.maxQueryLength;
      for (const p of s.pairs) {
        const a = await enc.encodeTexts(p.src, { maxLength, prefix: o.queryPrefix, batchSize: o.batchSize });
        const b = await enc.encodeTexts(p.eng, { maxLength, prefix: o.queryPrefix, batchSize: o.batchSize });
        const scores = await native().scoreMatrix(a, b, D);
        const n = p.eng.length;
        let hits = 0, apSum = 0, backHits = 0, backApSum = 0;
        for (let i = 0; i < p.src.length; i++) {
          const m = rowMetrics(scores.subarray(i * n, (i + 1) * n), [i]);
          if (m.ranks[0] === 1) hits++;
          apSum += m.averagePrecision;
          pq.lang.push(p.lang);
          pq.id.push(String(i + 1));
          pq.values.AP.push(m.averagePrecision);
        }
        // eng -> xxx: column j of the same matrix (the pair's files have equally many lines).
        const column = new Float32Array(p.src.length);
        for (let j = 0; j < n; j++) {
          for (let i = 0; i < p.src.length; i++) column[i] = scores[i * n + j];
          const m = rowMetrics(column, [j]);
          if (m.ranks[0] === 1) backHits++;
          backApSum += m.averagePrecision;
        }
        const acc = hits / p.src.length, backAcc = backHits / n;
        perLanguage[p.lang] = {
          'acc@1': acc, mAP: apSum / p.src.length, 'acc@1 eng->xxx': backAcc, 'mAP eng->xxx': backApSum / n, 'acc@1 both directions': (acc + backAcc) / 2,
          pairs: p.src.length,
        };
      }
      o.log(`${s.name}: ${s.pairs.map((p) => `${p.code} acc@1 ${perLanguage[p.lang]['acc@1'].toFixed(3)}`).join(', ')}`);
      out.push({ name: s.name, kind: 'bitext', languages: s.pairs.map((p) => p.lang), perLanguage, perQuery: pq, ms: performance.now() - t0 });
    }
  }
  return out;
}

/** The summary metrics of an outcome over a subset of its languages (NaN where the subset has none). */
export function outcomeMetrics(e: EvalOutcome, subset: readonly string[] = e.languages, metrics = SUMMARY_METRICS[e.kind]): Record<string, number> {
  if (e.kind === 'lareqa') {
    const r = e.result!;
    const all = subset.length === r.languages.length && r.languages.every((l) => subset.includes(l));
    // The whole set: the evaluation's own summary; a group: pairs with the query OR pool language
    // in it for cross-lingual (the report's group convention, src/report/markdown.ts groupTable).
    const a = all ? { ...r.summary, multi: r.summary.multi } : aggregate(r, subset, 'either');
    return {
      'mono mAP': a.mono.map, 'cross mAP': a.cross.map, 'multi mAP': a.multi.map, 'mono R@1': a.mono.r1, 'cross R@1': a.cross.r1,
      'multi R@10': a.multi.r10, 'rank distance': a.rankDistance,
    };
  }
  const langs = e.languages.filter((l) => subset.includes(l));
  const out: Record<string, number> = {};
  for (const m of metrics) out[m.name] = mean(langs.map((l) => e.perLanguage![l][m.name]));
  return out;
}
