// Comparison of several LAReQA runs (e.g. batching strategies, objectives, seeds) side by side, and
// reading result.json files with clear errors.
//
// Comparability: runs of different benches are refused. Runs over different language sets are
// compared on their common languages (refused when there are none): mono and cross are recomputed
// from each run's matrices over the common languages (cross: pairs with both languages common),
// multilingual mAP / R@10 / rank distance averaged over the common query languages, and the table
// says so. Those multilingual numbers still come from each run's own pool (all of its languages), so
// across different language sets they are indicative only; the note says that too.

import { readFile } from 'node:fs/promises';
import { aggregate, type Aggregate } from './aggregate.ts';
import { cell, code, DASH, fmt3, fmtP, fmtRank, plural, table } from './markdown.ts';
import { pairedByKey } from '../experiment/stats.ts';
import { ResultError, validateResult, type LareqaResult } from './types.ts';

export interface LabelledResult {
  label: string;
  result: LareqaResult;
}

export interface CompareOptions {
  /** Add per-language tables (mono mAP and multilingual mAP of each common language), default false. */
  perLanguage?: boolean;
}

/** Signed difference with `digits` decimals: +0.012, -0.004, ±0.000 (rounds to zero). */
export function fmtSigned(d: number, digits: number): string {
  if (!Number.isFinite(d)) return DASH;
  const s = Math.abs(d).toFixed(digits);
  if (Number(s) === 0) return `±${s}`;
  return (d > 0 ? '+' : '-') + s;
}

interface Metric {
  name: string;
  get: (a: Aggregate) => number;
  fmt: (x: number) => string;
  digits: number;
}

const METRICS: Metric[] = [
  { name: 'mono mAP', get: (a) => a.mono.map, fmt: fmt3, digits: 3 },
  { name: 'mono R@1', get: (a) => a.mono.r1, fmt: fmt3, digits: 3 },
  { name: 'cross mAP', get: (a) => a.cross.map, fmt: fmt3, digits: 3 },
  { name: 'cross R@1', get: (a) => a.cross.r1, fmt: fmt3, digits: 3 },
  { name: 'multi mAP', get: (a) => a.multi.map, fmt: fmt3, digits: 3 },
  { name: 'multi R@10', get: (a) => a.multi.r10, fmt: fmt3, digits: 3 },
  { name: 'rank distance (lower is better)', get: (a) => a.rankDistance, fmt: fmtRank, digits: 1 },
];

function fromSummary(r: LareqaResult): Aggregate {
  const n = r.languages.length;
  return {
    mono: { ...r.summary.mono },
    cross: { ...r.summary.cross },
    multi: { ...r.summary.multi },
    rankDistance: r.summary.rankDistance,
    settings: { mono: n, cross: n * (n - 1), multi: n },
  };
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/**
 * Side-by-side Markdown table of the summary metrics of several runs, each with its signed
 * difference to the first run. Throws when there is no run, labels repeat, a result is malformed,
 * the benches differ, or the runs have no language in common.
 */
export function compareResults(results: LabelledResult[], opts: CompareOptions = {}): string {
  if (results.length === 0) throw new Error('compareResults: no run to compare');
  const labels = results.map((x) => x.label);
  const dup = labels.find((l, i) => labels.indexOf(l) !== i);
  if (dup !== undefined) throw new Error(`compareResults: the label ${JSON.stringify(dup)} is given to more than one run`);
  const runs = results.map(({ label, result }) => ({ label, r: validateResult(result, `run "${label}"`) }));
  const first = runs[0];

  const otherBench = runs.find((x) => x.r.bench !== first.r.bench);
  if (otherBench)
    throw new Error(
      `compareResults: cannot compare runs of different benches: ${runs.map((x) => `"${x.label}" is ${x.r.bench}`).join(', ')}`,
    );

  const notes: string[] = [];
  const allSame = runs.every((x) => sameSet(x.r.languages, first.r.languages));
  let common = first.r.languages;
  let aggs: Aggregate[];
  if (allSame) {
    aggs = runs.map((x) => fromSummary(x.r));
  } else {
    common = first.r.languages.filter((l) => runs.every((x) => x.r.languages.includes(l)));
    const sets = runs.map((x) => `"${x.label}": ${x.r.languages.join(' ')}`).join('; ');
    if (common.length === 0) throw new Error(`compareResults: the runs have no language in common (${sets})`);
    aggs = runs.map((x) => aggregate(x.r, common, 'both'));
    notes.push(
      `The runs evaluate different languages (${sets}). Compared on the ${common.length} common language${common.length === 1 ? '' : 's'} (${common.join(' ')}): ` +
        `mono and cross recomputed from each run's matrices (cross: pairs of common languages${common.length < 2 ? ', none here' : ''}); ` +
        `multi mAP, R@10 and rank distance averaged over the common query languages, each run's pool still being all of its own languages, so these are indicative only.`,
    );
  }

  // same bench, but other data files or article selections: worth a word
  for (const x of runs.slice(1)) {
    const differ = common.filter((l) => first.r.data.files[l] !== undefined && x.r.data.files[l] !== undefined && first.r.data.files[l] !== x.r.data.files[l]);
    if (differ.length) notes.push(`"${x.label}" was evaluated on other data files than "${first.label}" for ${differ.join(' ')} (sha256 differ).`);
    if ((first.r.data.articles ?? '') !== (x.r.data.articles ?? ''))
      notes.push(`"${x.label}" selects articles as ${JSON.stringify(x.r.data.articles ?? 'all')}, "${first.label}" as ${JSON.stringify(first.r.data.articles ?? 'all')}.`);
  }

  const header = ['metric', cell(first.label)];
  for (const x of runs.slice(1)) header.push(cell(x.label), `Δ ${cell(x.label)}`);
  const rows = METRICS.map((m) => {
    const base = m.get(aggs[0]);
    const row = [m.name, m.fmt(base)];
    aggs.slice(1).forEach((a) => row.push(m.fmt(m.get(a)), fmtSigned(m.get(a) - base, m.digits)));
    return row;
  });

  const runRows = runs.map((x) => [
    cell(x.label),
    code(x.r.model.name ?? x.r.model.path),
    String(x.r.seed),
    cell(x.r.xlir),
    cell(x.r.created),
    cell(x.r.languages.join(' ')),
  ]);

  const parts = [
    `Comparison on ${cell(first.r.bench)}, ${plural(common.length, allSame ? 'language' : 'common language', allSame ? 'languages' : 'common languages')}; Δ = run − "${cell(first.label)}".`,
    table(header, rows, ['l', ...header.slice(1).map(() => 'r' as const)]),
  ];
  if (notes.length) parts.push(notes.map((n) => `> Note: ${cell(n)}`).join('\n>\n'));
  parts.push(table(['run', 'model', 'seed', 'xlir', 'created', 'languages'], runRows));
  // Multilingual AP is the paper's headline; a question and its translations are one unit.
  parts.push(pairedSection('multilingual AP', 'questions (a question and its translations together)',
    results.map(({ label, result }) => ({ label, values: lareqaPerQuery(result, 'multiAp') })), (k) => k.slice(k.indexOf('\u0000') + 1)));

  if (opts.perLanguage) {
    for (const [title, get, fmt, digits] of [
      ['mono mAP', (r: LareqaResult, l: string) => r.matrix.map[r.languages.indexOf(l)][r.languages.indexOf(l)], fmt3, 3],
      ['multi mAP', (r: LareqaResult, l: string) => r.multilingual[l].map, fmt3, 3],
      ['rank distance', (r: LareqaResult, l: string) => r.multilingual[l].rankDistance, fmtRank, 1],
    ] as const) {
      const h = ['language', cell(first.label)];
      for (const x of runs.slice(1)) h.push(cell(x.label), `Δ ${cell(x.label)}`);
      const rr = common.map((l) => {
        const base = get(first.r, l);
        const row = [cell(l), fmt(base)];
        for (const x of runs.slice(1)) row.push(fmt(get(x.r, l)), fmtSigned(get(x.r, l) - base, digits));
        return row;
      });
      parts.push(`Per language: ${title}`, table(h, rr, ['l', ...h.slice(1).map(() => 'r' as const)]));
    }
  }
  return parts.join('\n\n') + '\n';
}

/** Resamples and seed of the paired test of `xlir compare` (fixed, so a comparison is reproducible). */
export const COMPARE_BOOTSTRAP = { resamples: 10_000, seed: 0 };

/**
 * The paired test of a comparison: each run against the first on a per-query metric, over the
 * queries both hold (keyed "lang\u0000id"), by stats.ts pairedBootstrap, resampling `cluster(key)`
 * as units. Runs without per-query values get a note instead.
 */
export function pairedSection(
  metric: string, units: string, runs: { label: string; values?: ReadonlyMap<string, number> }[], cluster: (key: string) => string,
): string {
  const without = runs.filter((x) => !x.values).map((x) => `"${cell(x.label)}"`);
  if (without.length) return `> Note: no paired test: ${without.join(', ')} hold${without.length === 1 ? 's' : ''} no per-query values (a result written by xlir eval has them).`;
  const rows = runs.slice(1).map((x) => {
    const r = pairedByKey(runs[0].values!, x.values!, cluster, COMPARE_BOOTSTRAP);
    return [cell(x.label), fmtSigned(r.diff, 4), `[${fmtSigned(r.lo, 4)}, ${fmtSigned(r.hi, 4)}]`, fmtP(r.p), `${r.n}${r.unpaired ? ` (${r.unpaired} unpaired left out)` : ''}`];
  });
  return [
    `Paired bootstrap of ${metric} per query against "${cell(runs[0].label)}": mean Δ over the queries both runs hold, 95% percentile interval and two-sided p ` +
      `(${COMPARE_BOOTSTRAP.resamples} resamples of ${units}, seed ${COMPARE_BOOTSTRAP.seed}).`,
    table(['run', `Δ ${metric}`, '95% interval', 'p', 'queries'], rows, ['l', 'r', 'r', 'r', 'r']),
  ].join('\n\n');
}

/** Per-query values of a LAReQA result.json, keyed "lang\u0000question id" (undefined when it has none). */
function lareqaPerQuery(r: LareqaResult, metric: 'multiAp'): Map<string, number> | undefined {
  const pq = (r as { perQuery?: { lang: string; id: string; multiAp: number | null }[] }).perQuery;
  return Array.isArray(pq) ? new Map(pq.map((q) => [`${q.lang}\u0000${q.id}`, q[metric] ?? NaN])) : undefined;
}

/** Parses the text of a result file; `source` names it in errors. */
export function parseResult(text: string, source: string): LareqaResult {
  if (text.trim() === '') throw new ResultError(`${source}: empty file, expected a LAReQA result (JSON)`);
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new ResultError(`${source}: not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  return validateResult(obj, source);
}

/** Reads and checks a result.json; errors name the file and, for a malformed result, the field. */
export async function readResult(path: string): Promise<LareqaResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    const why = errno === 'ENOENT' ? 'no such file' : errno === 'EISDIR' ? 'is a directory' : e instanceof Error ? e.message : String(e);
    throw new ResultError(`${path}: cannot read the result (${why})`);
  }
  return parseResult(text, path);
}
