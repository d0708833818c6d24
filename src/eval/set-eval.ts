// `xlir eval --bench tydiqa|tatoeba`: one model on TyDi QA GoldP dev (monolingual retrieval, each
// language its own pool of gold passages: mAP, R@1, R@10) or Tatoeba (bitext retrieval: each xxx
// sentence against all English sentences of its pair: accuracy@1 and mAP, which is the MRR with one
// relevant sentence; the same the other way, eng -> xxx, and the mean accuracy of the two). The protocol is the experiments' (src/experiment/evaluate.ts), so a number
// here equals the same model's number in an experiment report. Writes result.json (every metric per
// language, the macro averages, optional language groups, per-query values, data hashes, seed,
// xlir version) and report.md.
import { join } from 'node:path';
import type { Encoder } from '../encoder.ts';
import { native } from '../native.ts';
import { canonicalLanguage } from '../data/languages.ts';
import { BITEXT_REVERSE_METRICS, evaluateAll, outcomeMetrics, SUMMARY_METRICS, type EvalOutcome, type PerQueryColumns } from '../experiment/evaluate.ts';
import type { BitextEvalSet, MonoEvalSet } from '../experiment/data.ts';
import type { EncodeRunOptions } from './lareqa-eval.ts';
import { cell, code, fmt3, plural, table, trainedBy } from '../report/markdown.ts';
import { fmtSigned, pairedSection } from '../report/compare.ts';
import { writeFileAtomic } from '../report/write.ts';

export interface SetEvalOptions extends EncodeRunOptions {
  /** Named language groups (e.g. zero-shot, low-resource), averaged beside the whole set. */
  groups?: Record<string, string[]>;
}

export interface SetResult {
  kind: 'xlir-set-eval';
  bench: 'tydiqa' | 'tatoeba';
  protocol: string;
  xlir: string;
  created: string;
  seed: number;
  /** sha256: of the weight files; run: the training run recorded in the model folder. */
  model: { path: string; sha256?: string; run?: Record<string, unknown> };
  data: { dir: string; sha256: Record<string, string> };
  /** What shaped the inputs: prefixes, lengths, batch size (Tatoeba: one prefix and length for both sides). */
  options: Record<string, string | number>;
  languages: string[];
  /** Tatoeba: the pair's own code of each language (sw: swh), where it differs. */
  codes?: Record<string, string>;
  /** Macro averages over the languages (and over each group's languages). */
  summary: Record<string, number>;
  groups: Record<string, { languages: string[]; metrics: Record<string, number> }>;
  perLanguage: Record<string, Record<string, number>>;
  perQuery: PerQueryColumns;
  ms: number;
}

const PROTOCOL = {
  tydiqa: 'TyDi QA GoldP dev, monolingual: each question against the distinct gold passages of its language; mAP over the full pool (as sklearn), R@1, R@10 (pessimistic ranks for ties)',
  tatoeba: 'Tatoeba, xxx -> eng: each sentence against every English sentence of its pair; acc@1 (pessimistic ranks for ties) and mAP (one relevant sentence: MRR); the same eng -> xxx, and the mean acc@1 of both directions (what sentence-transformers\' TranslationEvaluator reports)',
};

/** The metrics a result of this bench reports, in table order. */
function benchMetrics(bench: SetResult['bench']): { name: string }[] {
  return bench === 'tydiqa' ? SUMMARY_METRICS.mono : [...SUMMARY_METRICS.bitext, ...BITEXT_REVERSE_METRICS];
}

export async function evaluateSet(enc: Encoder, set: MonoEvalSet | BitextEvalSet, o: SetEvalOptions): Promise<SetResult> {
  const t0 = performance.now();
  const bench = set.kind === 'mono' ? 'tydiqa' : 'tatoeba';
  const [e]: EvalOutcome[] = await evaluateAll(enc, [set], { ...o, modelName: o.modelPath, log: o.log ?? (() => {}) });
  const groups: SetResult['groups'] = {};
  // Only the groups asked for: unlike a LAReQA set, these sets hold many languages that training
  // never saw without being held out, so "not zero-shot" would not mean "seen".
  for (const [name, langs] of Object.entries(o.groups ?? {})) {
    const want = langs.map(canonicalLanguage);
    const present = e.languages.filter((l) => want.includes(l));
    if (!present.length) throw new Error(`group ${name}: none of ${langs.join(' ')} is among the evaluated languages (${e.languages.join(' ')})`);
    groups[name] = { languages: present, metrics: outcomeMetrics(e, present, benchMetrics(bench)) };
  }
  const { queryPrefix, passagePrefix, maxQueryLength, maxPassageLength, batchSize } = o;
  return {
    kind: 'xlir-set-eval', bench, protocol: PROTOCOL[bench], xlir: native().info().version, created: new Date().toISOString(),
    seed: o.seed, model: { path: o.modelPath }, data: { dir: set.dir, sha256: set.files },
    options: bench === 'tatoeba' ? { prefix: queryPrefix, maxLength: maxQueryLength, batchSize } : { queryPrefix, passagePrefix, maxQueryLength, maxPassageLength, batchSize },
    languages: e.languages, codes: set.kind === 'bitext' ? Object.fromEntries(set.pairs.filter((p) => p.code !== p.lang).map((p) => [p.lang, p.code])) : undefined,
    summary: outcomeMetrics(e, e.languages, benchMetrics(bench)), groups, perLanguage: e.perLanguage!, perQuery: e.perQuery, ms: performance.now() - t0,
  };
}

export function setMarkdown(r: SetResult): string {
  // A result written before a metric existed (Tatoeba's eng -> xxx) shows the ones it has.
  const metrics = benchMetrics(r.bench).map((m) => m.name).filter((m) => m in r.summary);
  const counts = r.bench === 'tydiqa' ? ['queries', 'candidates'] : ['pairs'];
  const parts = [`# ${r.bench === 'tydiqa' ? 'TyDi QA GoldP' : 'Tatoeba'}: ${cell(r.model.path)}`, r.protocol];
  parts.push(table(['run', ''], [
    ['model', code(r.model.path)], ['data', code(r.data.dir)], ['languages', `${r.languages.length}: ${r.languages.join(' ')}`],
    ['options', Object.entries(r.options).map(([k, v]) => `${k} ${code(String(v))}`).join(', ')],
    ...(r.model.sha256 ? [['weights', `sha256 ${code(r.model.sha256.slice(0, 16))}`]] : []), ...(r.model.run ? [['trained', trainedBy(r.model.run)]] : []),
    ['evaluation seed', `${r.seed} (the evaluation draws nothing)`], ['xlir', `${cell(r.xlir)}, ${cell(r.created)}`], ['time', `${(r.ms / 1000).toFixed(1)} s`],
  ]));
  const groupRows = Object.entries(r.groups).map(([g, x]) => [`**${cell(g)}** (${x.languages.join(' ')})`, ...metrics.map((m) => fmt3(x.metrics[m])), ...counts.map(() => '')]);
  parts.push('## Summary', 'Macro averages over languages.', table(['', ...metrics, ...counts],
    [[`**all** (${r.languages.length})`, ...metrics.map((m) => fmt3(r.summary[m])), ...counts.map(() => '')], ...groupRows], ['l', ...metrics.map(() => 'r' as const), ...counts.map(() => 'r' as const)]));
  const name = (l: string) => (r.codes?.[l] ? `${l} (${r.codes[l]})` : l);
  const rows = r.languages.map((l) => [name(l), ...metrics.map((m) => fmt3(r.perLanguage[l][m])), ...counts.map((c) => String(r.perLanguage[l][c]))]);
  parts.push('## Per language', table(['language', ...metrics, ...counts], rows, ['l', ...metrics.map(() => 'r' as const), ...counts.map(() => 'r' as const)]));
  return parts.join('\n\n') + '\n';
}

export async function writeSetResult(r: SetResult, out: string): Promise<{ json: string; markdown: string }> {
  const json = join(out, 'result.json'), markdown = join(out, 'report.md');
  await writeFileAtomic(json, JSON.stringify(r) + '\n');
  await writeFileAtomic(markdown, setMarkdown(r));
  return { json, markdown };
}

/** A result's per-query AP keyed "lang\u0000id" (null, written for NaN, reads back as NaN). */
function perQueryAP(r: SetResult): Map<string, number> | undefined {
  const pq = r.perQuery, ap = pq?.values?.AP;
  return Array.isArray(ap) ? new Map(pq.lang.map((l, i) => [`${l}\u0000${pq.id[i]}`, ap[i] ?? NaN])) : undefined;
}

/**
 * `xlir compare` of TyDi QA or Tatoeba results: the macro averages over the languages every run has
 * (recomputed from the per-language values when the runs' language sets differ), each group every
 * run has, and a per-language table of the first metric; Δ = run − the first run.
 */
export function compareSetResults(runs: { label: string; r: SetResult }[]): string {
  const first = runs[0];
  const labels = runs.map((x) => x.label), dup = labels.find((l, i) => labels.indexOf(l) !== i);
  if (dup !== undefined) throw new Error(`two runs are labelled "${dup}" (the folder holding each result.json): copy one elsewhere`);
  const other = runs.find((x) => x.r.bench !== first.r.bench);
  if (other) throw new Error(`cannot compare runs of different benches: "${first.label}" is ${first.r.bench}, "${other.label}" ${other.r.bench}`);
  const common = first.r.languages.filter((l) => runs.every((x) => x.r.languages.includes(l)));
  if (!common.length) throw new Error(`the runs have no language in common (${runs.map((x) => `"${x.label}": ${x.r.languages.join(' ')}`).join('; ')})`);
  const metrics = benchMetrics(first.r.bench).map((m) => m.name).filter((m) => runs.every((x) => m in x.r.summary));
  const mean = (r: SetResult, langs: string[], m: string) => langs.reduce((s, l) => s + r.perLanguage[l][m], 0) / langs.length;
  const header = ['', cell(first.label), ...runs.slice(1).flatMap((x) => [cell(x.label), `Δ ${cell(x.label)}`])];
  const line = (name: string, get: (r: SetResult) => number) => {
    const base = get(first.r);
    return [name, fmt3(base), ...runs.slice(1).flatMap((x) => [fmt3(get(x.r)), fmtSigned(get(x.r) - base, 3)])];
  };
  const rows: string[][] = [];
  for (const m of metrics) rows.push(line(`${m}, ${plural(common.length, 'language', 'languages')}`, (r) => mean(r, common, m)));
  for (const g of Object.keys(first.r.groups).filter((g) => runs.every((x) => x.r.groups[g])))
    for (const m of metrics) rows.push(line(`${m}, ${cell(g)}`, (r) => r.groups[g].metrics[m]));
  const notes: string[] = [];
  if (common.length < first.r.languages.length || runs.some((x) => x.r.languages.length !== common.length))
    notes.push(`> Note: the runs evaluate different languages; the averages are over the ${common.length} they share.`);
  for (const x of runs.slice(1)) {
    const differ = common.filter((l) => first.r.data.sha256[l] !== x.r.data.sha256[l]);
    if (differ.length) notes.push(`> Note: "${cell(x.label)}" was evaluated on other data files for ${differ.join(' ')} (sha256 differ).`);
  }
  const m0 = metrics[0];
  const per = common.map((l) => line(l, (r) => r.perLanguage[l][m0]));
  return [
    `Comparison on ${first.r.bench}; Δ = run − "${cell(first.label)}".`, table(header, rows, ['l', ...header.slice(1).map(() => 'r' as const)]), ...notes,
    table(['run', 'model', 'seed', 'xlir', 'created'], runs.map((x) => [cell(x.label), code(x.r.model.path), String(x.r.seed), cell(x.r.xlir), cell(x.r.created)])),
    `Per language: ${m0}`, table(['language', ...header.slice(1)], per, ['l', ...header.slice(1).map(() => 'r' as const)]),
    // AP per query (Tatoeba: xxx -> eng); the queries are independent units here.
    pairedSection('AP', 'queries', runs.map((x) => ({ label: x.label, values: perQueryAP(x.r) })), (k) => k),
  ].join('\n\n') + '\n';
}
