// The report of an experiment: summary.json (every number), report.md (tables), pictures.
//
// - Per evaluation set, language group (all, seen, zero-shot, low-resource, high-resource) and row
//   (each variant, and the untrained reference): mean, sd, min and max over the seeds of every
//   summary metric (stats.ts spread).
// - Paired bootstrap between variants (stats.ts pairedBootstrap): per query, the metric averaged
//   over the variant's seeds; B - A over the queries of the group; difference, 95% interval, p.
// - Pictures: per set, the headline metrics of every row with min-max bars; the language-bias chart
//   (multilingual rank distance per query language and variant); and per variant the seed-averaged
//   LAReQA report of src/report (heatmap, rank distance, tables) under variants/<variant>/<set>/.
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { renderSvg, svgToPng } from '../report/charts.ts';
import { cell as mdCell, code, DASH, fmt3, fmtP, fmtRank, table } from '../report/markdown.ts';
import type { LareqaResult } from '../report/types.ts';
import { writeFileAtomic, writeReport } from '../report/write.ts';
import { fmtTime } from '../progress.ts';
import type { ExperimentConfig, TrainOptionValue } from './config.ts';
import type { PreparedData } from './data.ts';
import { outcomeMetrics, QUERY_METRICS, SUMMARY_METRICS, type EvalKind, type EvalOutcome } from './evaluate.ts';
import type { CellResults } from './runner.ts';
import { pairedBootstrap, spread, type Spread } from './stats.ts';

export const REFERENCE = 'reference';

export interface Comparison {
  set: string;
  group: string;
  metric: string;
  lowerIsBetter: boolean;
  /** Difference is b - a. */
  a: string;
  b: string;
  diff: number;
  lo: number;
  hi: number;
  p: number;
  queries: number;
  /** Resampled units: parallel question groups (LAReQA) or single queries. */
  units: number;
  seeds: { a: number; b: number };
}

export interface ExperimentSummary {
  kind: 'xlir-experiment';
  name: string;
  description: string;
  source: string;
  out: string;
  created: string;
  xlir: string;
  model: string;
  notes: string[];
  trainLanguages: string[];
  heldOutLanguages: string[];
  lowResource: string[];
  seeds: number[];
  variants: { name: string; options: Record<string, TrainOptionValue> }[];
  train: Record<string, TrainOptionValue>;
  evalSets: { name: string; kind: EvalKind; languages: string[]; groups: Record<string, string[]> }[];
  cells: { id: string; variant: string; seed: number; done: boolean; steps?: number; finalLoss?: number | null; bestLoss?: number | null; trainMs?: number; evalMs?: number; learnedTemperature?: number }[];
  complete: boolean;
  /** set -> group ('all', 'seen', 'zero-shot', ...) -> row (variant or 'reference') -> metric -> spread over seeds. */
  metrics: Record<string, Record<string, Record<string, Record<string, Spread>>>>;
  /** set -> row -> language -> metric -> spread (the per-language headline metrics). */
  perLanguage: Record<string, Record<string, Record<string, Record<string, Spread>>>>;
  significance: { resamples: number; seed: number; method: string };
  comparisons: Comparison[];
  timing: { totalMs: number; trainMs: number; evalMs: number };
}

/** Per-language metrics of each kind shown in the per-language tables. */
const LANGUAGE_METRICS: Record<EvalKind, string[]> = {
  lareqa: ['mono mAP', 'multi mAP', 'rank distance'],
  mono: ['mAP', 'R@1'],
  bitext: ['acc@1', 'mAP'],
};

function languageValues(e: EvalOutcome, lang: string): Record<string, number> {
  if (e.kind !== 'lareqa') return e.perLanguage![lang];
  const r = e.result!;
  const i = r.languages.indexOf(lang);
  return { 'mono mAP': r.matrix.map[i][i], 'multi mAP': r.multilingual[lang].map, 'rank distance': r.multilingual[lang].rankDistance };
}

const nan = (x: number | null | undefined) => (x === null || x === undefined ? NaN : x);

/** Per query key (lang + id), the value averaged over the given outcomes (seeds). */
function queryMeans(outcomes: EvalOutcome[], metric: string): Map<string, number> {
  const sum = new Map<string, [number, number]>();
  for (const e of outcomes) {
    const v = e.perQuery.values[metric];
    for (let i = 0; i < v.length; i++) {
      const x = nan(v[i]);
      if (Number.isNaN(x)) continue;
      const k = `${e.perQuery.lang[i]}\u0000${e.perQuery.id[i]}`;
      const s = sum.get(k);
      if (s) (s[0] += x), s[1]++;
      else sum.set(k, [x, 1]);
    }
  }
  return new Map([...sum].map(([k, [s, n]]) => [k, s / n]));
}

export function buildSummary(
  c: ExperimentConfig, data: PreparedData, groups: Record<string, Record<string, string[]>>, results: CellResults[], reference: CellResults | null,
  meta: { out: string; xlir: string; ms: number; cells: string[] },
): ExperimentSummary {
  const rows = c.variants.map((v) => v.name).filter((v) => results.some((r) => r.variant === v));
  const metrics: ExperimentSummary['metrics'] = {};
  const perLanguage: ExperimentSummary['perLanguage'] = {};
  const comparisons: Comparison[] = [];
  const evalSets: ExperimentSummary['evalSets'] = [];
  for (const s of data.evalSets) {
    const kind: EvalKind = s.kind;
    const langs = s.kind === 'bitext' ? s.pairs.map((p) => p.lang) : s.sides.map((x) => x.lang);
    const g: Record<string, string[]> = { all: langs, ...groups[s.name] };
    evalSets.push({ name: s.name, kind, languages: langs, groups: groups[s.name] });
    const outcomesOf = (row: string) =>
      (row === REFERENCE ? (reference ? [reference] : []) : results.filter((r) => r.variant === row)).map((r) => r.evals.find((e) => e.name === s.name)).filter((e): e is EvalOutcome => !!e);
    metrics[s.name] = {};
    for (const [gname, members] of Object.entries(g)) {
      metrics[s.name][gname] = {};
      for (const row of [...(reference ? [REFERENCE] : []), ...rows]) {
        const per = outcomesOf(row).map((e) => outcomeMetrics(e, members));
        if (!per.length) continue;
        metrics[s.name][gname][row] = Object.fromEntries(SUMMARY_METRICS[kind].map((m) => [m.name, spread(per.map((x) => x[m.name]))]));
      }
    }
    perLanguage[s.name] = {};
    for (const row of [...(reference ? [REFERENCE] : []), ...rows]) {
      const os = outcomesOf(row);
      if (!os.length) continue;
      perLanguage[s.name][row] = Object.fromEntries(langs.map((l) => [l, Object.fromEntries(LANGUAGE_METRICS[kind].map((m) => [m, spread(os.map((e) => languageValues(e, l)[m]))]))]));
    }

    // Paired bootstrap between variants.
    const pairs: [string, string][] = (c.significance.pairs ?? rows.flatMap((a, i) => rows.slice(i + 1).map((b) => [a, b] as [string, string])))
      .filter(([a, b]) => [a, b].every((x) => (x === REFERENCE ? !!reference : rows.includes(x))));
    if (!pairs.length) continue;
    const testGroups = ['all', 'zero-shot', 'held-out', 'low-resource'].filter((x) => g[x]);
    for (const qm of QUERY_METRICS[kind]) {
      const means = new Map<string, Map<string, number>>();
      for (const row of new Set(pairs.flat())) means.set(row, queryMeans(outcomesOf(row), qm.name));
      for (const gname of testGroups) {
        const members = new Set(g[gname]);
        // Queries of the group with a value in every compared row (the same for all in practice).
        const keys = [...means.get(pairs[0][0])!.keys()].filter((k) => members.has(k.split('\u0000')[0]) && [...means.values()].every((m) => m.has(k))).sort();
        if (!keys.length) continue;
        const diffs = pairs.map(([a, b]) => keys.map((k) => means.get(b)!.get(k)! - means.get(a)!.get(k)!));
        // Parallel sets (LAReQA): a question and its translations share an id and are resampled together.
        const clusterOf = new Map<string, number>();
        const clusters = keys.map((k) => {
          const c = kind === 'lareqa' ? k.split('\u0000')[1] : k;
          let i = clusterOf.get(c);
          if (i === undefined) clusterOf.set(c, (i = clusterOf.size));
          return i;
        });
        const res = pairedBootstrap(diffs, { resamples: c.significance.resamples, seed: c.significance.seed, clusters });
        pairs.forEach(([a, b], k) => comparisons.push({
          set: s.name, group: gname, metric: qm.name, lowerIsBetter: !!qm.lower, a, b, diff: res[k].diff, lo: res[k].lo, hi: res[k].hi, p: res[k].p,
          queries: res[k].n, units: res[k].units, seeds: { a: outcomesOf(a).length, b: outcomesOf(b).length },
        }));
      }
    }
  }
  const byId = new Map(results.map((r) => [r.id, r]));
  const cells = meta.cells.map((id) => {
    const r = byId.get(id);
    const [variant, seed] = [id.replace(/-s\d+$/, ''), Number(/-s(\d+)$/.exec(id)![1])];
    return r
      ? { id, variant, seed, done: true, steps: r.train.steps, finalLoss: r.train.finalLoss, bestLoss: r.train.bestLoss, trainMs: r.train.trainMs, evalMs: r.evalMs,
        learnedTemperature: r.train.learnedTemperature }
      : { id, variant, seed, done: false };
  });
  return {
    kind: 'xlir-experiment', name: c.name, description: c.description, source: c.source, out: meta.out, created: new Date().toISOString(), xlir: meta.xlir,
    model: c.model ?? `random ${c.scratch} encoder (from scratch)`, notes: data.notes, trainLanguages: data.trainLanguages,
    heldOutLanguages: c.heldOutLanguages, lowResource: c.lowResource, seeds: c.seeds, variants: c.variants, train: c.train, evalSets, cells,
    complete: cells.every((x) => x.done),
    metrics, perLanguage,
    significance: {
      resamples: c.significance.resamples, seed: c.significance.seed,
      method: 'paired bootstrap over queries of the per-query metric averaged over seeds, resampling parallel question groups (LAReQA: a question and its translations) as units; ' +
        'p = (1 + #{|d* - d| >= |d|}) / (B + 1); 95% percentile interval',
    },
    comparisons,
    timing: {
      totalMs: meta.ms, trainMs: results.reduce((a, r) => a + r.train.trainMs, 0),
      evalMs: results.reduce((a, r) => a + r.evalMs, 0) + (reference?.evalMs ?? 0),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Markdown

/** A picture of the report: alt text and caption, file, and links shown after the caption. */
export interface Picture {
  title: string;
  file: string;
  links?: string;
}

const isRank = (metric: string) => metric === 'rank distance';
const fmtV = (metric: string, x: number) => (isRank(metric) ? fmtRank(x) : fmt3(x));

/** `mean ± sd (min–max)`; a single value alone. */
export function fmtSpread(metric: string, s: Spread | undefined): string {
  if (!s || !s.n) return DASH;
  if (s.n === 1) return fmtV(metric, s.mean);
  return `${fmtV(metric, s.mean)} ± ${fmtV(metric, s.sd)} (${fmtV(metric, s.min)}–${fmtV(metric, s.max)})`;
}

function fmtSignedV(metric: string, d: number): string {
  if (!Number.isFinite(d)) return DASH;
  const s = fmtV(metric, Math.abs(d));
  return Number(s) === 0 ? `±${s}` : `${d > 0 ? '+' : '−'}${s}`;
}

function optionsText(o: Record<string, TrainOptionValue>): string {
  const e = Object.entries(o);
  return e.length ? e.map(([k, v]) => code(`${k}: ${Array.isArray(v) ? v.join(' ') : String(v)}`)).join(' ') : '(defaults)';
}

function rowLabel(row: string): string {
  return row === REFERENCE ? '*untrained (reference)*' : `**${mdCell(row)}**`;
}

/** The whole report.md text (pictures passed in as relative paths). */
export function experimentMarkdown(s: ExperimentSummary, pictures: Record<string, Picture[]>, warnings: string[] = []): string {
  const parts: string[] = [];
  parts.push(`# Experiment ${code(s.name)}`);
  if (s.description) parts.push(s.description.trim());
  const done = s.cells.filter((x) => x.done).length;
  const runRows: string[][] = [
    ['model', mdCell(s.model)],
    ...s.notes.map((n) => ['data', mdCell(n)]),
    ['training languages', s.trainLanguages.join(' ')],
    ['held out (zero-shot)', s.heldOutLanguages.join(' ') || DASH],
    ['low-resource group', s.lowResource.join(' ') || DASH],
    ['training options', optionsText(s.train)],
    ...s.variants.map((v) => [`variant ${mdCell(v.name)}`, optionsText(v.options)]),
    ['seeds', `${s.seeds.join(' ')}: ${done} of ${s.cells.length} cells finished${s.complete ? '' : ` (missing: ${s.cells.filter((x) => !x.done).map((x) => x.id).join(' ')})`}`],
    ['time', `${fmtTime(s.timing.totalMs / 1000)} in this run; training ${fmtTime(s.timing.trainMs / 1000)} and evaluation ${fmtTime(s.timing.evalMs / 1000)} over all cells`],
    ['xlir', `${mdCell(s.xlir)}, ${mdCell(s.created)}`],
  ];
  parts.push(table(['experiment', ''], runRows));
  parts.push(
    'Values are the mean ± sample standard deviation over the seeds, with (min–max); the *untrained (reference)* row is the base model before training, ' +
      'evaluated once. mAP and recall: higher is better; rank distance (multilingual language bias, METHOD.md section 5): lower is better. ' +
      'Groups: *seen* = languages in the training data, *zero-shot* = languages absent from it (held out or never present), ' +
      '*held-out* = the zero-shot languages held out on purpose (shown when the data also has never-present ones), *low-resource* as configured, *high-resource* = the others; ' +
      'in a group row, cross-lingual averages the pairs whose query or pool language is in the group.',
  );
  for (const w of warnings) parts.push(`> Note: ${mdCell(w)}`);

  for (const set of s.evalSets) {
    const m = s.metrics[set.name];
    const metricNames = SUMMARY_METRICS[set.kind].map((x) => x.name);
    const kindText = set.kind === 'lareqa' ? 'LAReQA protocol: monolingual, cross-lingual and multilingual pools' :
      set.kind === 'mono' ? 'monolingual retrieval, each language its own pool' : 'bitext retrieval xxx → eng among the pair\'s English sentences';
    parts.push(`## ${mdCell(set.name)}`, `${kindText}; ${set.languages.length} languages: ${set.languages.join(' ')}.`);
    const rowsOf = (g: string) => Object.keys(m[g] ?? {});
    parts.push('### All languages', table(['', ...metricNames], rowsOf('all').map((r) => [rowLabel(r), ...metricNames.map((x) => fmtSpread(x, m.all[r][x]))]),
      ['l', ...metricNames.map(() => 'r' as const)]));
    const groupNames = Object.keys(set.groups);
    if (groupNames.length) {
      const head = set.kind === 'lareqa' ? ['mono mAP', 'cross mAP', 'multi mAP', 'rank distance'] : metricNames;
      const rows: string[][] = [];
      for (const g of groupNames) for (const r of rowsOf(g)) rows.push([mdCell(g), set.groups[g].join(' '), rowLabel(r), ...head.map((x) => fmtSpread(x, m[g][r][x]))]);
      parts.push('### Language groups', table(['group', 'languages', '', ...head], rows, ['l', 'l', 'l', ...head.map(() => 'r' as const)]));
    }
    const pl = s.perLanguage[set.name];
    const lm = LANGUAGE_METRICS[set.kind];
    for (const metric of lm.slice(0, set.kind === 'lareqa' ? 3 : 1)) {
      const rows = Object.keys(pl).map((r) => [rowLabel(r), ...set.languages.map((l) => fmtV(metric, pl[r][l][metric].mean))]);
      const anyZero = set.languages.some((l) => !s.trainLanguages.includes(l));
      parts.push(`### Per language: ${metric}${s.seeds.length > 1 ? ' (mean over seeds)' : ''}`,
        table(['', ...set.languages.map((l) => `${mdCell(l)}${s.trainLanguages.includes(l) ? '' : '*'}`)], rows, ['l', ...set.languages.map(() => 'r' as const)]) +
          (anyZero ? '\n\n`*` = zero-shot language (not in the training data).' : ''));
    }
    const comps = s.comparisons.filter((x) => x.set === set.name);
    if (comps.length) {
      const rows = comps.map((x) => {
        const better = x.p < 0.05 ? ((x.diff > 0) !== x.lowerIsBetter ? x.b : x.a) : '';
        return [
          `${mdCell(x.b)} − ${mdCell(x.a)}`, mdCell(x.group), `${mdCell(x.metric)}${x.lowerIsBetter ? ' ↓' : ''}`, fmtSignedV(x.metric, x.diff),
          `[${fmtSignedV(x.metric, x.lo)}, ${fmtSignedV(x.metric, x.hi)}]`, fmtP(x.p), better ? `**${mdCell(better)}**` : 'no',
          x.units === x.queries ? String(x.queries) : `${x.queries} (${x.units} groups)`,
          `${x.seeds.b}/${x.seeds.a}`,
        ];
      });
      parts.push('### Paired significance tests',
        `Paired bootstrap over queries (${s.significance.resamples} resamples, seed ${s.significance.seed}): per query, the metric averaged over the seeds of each variant; ` +
        'difference B − A of the means over the group\'s queries (as query language), its 95% interval and the two-sided p-value of no difference. ' +
        (set.kind === 'lareqa' ? 'Translations of a question are not independent: each resample draws whole parallel groups (a question in all its languages). ' : '') +
        '"better at 5%" names the better variant when p < 0.05 (↓: lower is better). With several comparisons, read single p-values near 0.05 with care.',
        table(['B − A', 'group', 'metric', 'difference', '95% interval', 'p', 'better at 5%', 'queries', 'seeds B/A'], rows,
          ['l', 'l', 'l', 'r', 'r', 'r', 'l', 'r', 'r']));
    }
    const pics = pictures[set.name] ?? [];
    if (pics.length) parts.push('### Pictures', pics.map((p) => `![${p.title}](${p.file})\n\n${p.title}${p.links ? ` (${p.links})` : ''}`).join('\n\n'));
  }

  // The learned temperature's column only when some cell learned it (learn-temperature).
  const learned = s.cells.some((x) => x.learnedTemperature !== undefined);
  const cellRows = s.cells.map((x) => [
    code(x.id), x.done ? 'yes' : '**no**', x.steps === undefined ? DASH : String(x.steps), x.finalLoss == null ? DASH : x.finalLoss.toFixed(4),
    x.bestLoss == null ? DASH : x.bestLoss.toFixed(4),
    ...(learned ? [x.learnedTemperature === undefined ? DASH : x.learnedTemperature.toPrecision(4)] : []),
    x.trainMs === undefined ? DASH : fmtTime(x.trainMs / 1000), x.evalMs === undefined ? DASH : fmtTime(x.evalMs / 1000),
  ]);
  parts.push('## Cells', 'Each cell is one `xlir train` run in `cells/<variant>-s<seed>/` (its `run.json`, `log.jsonl` and `model/`) with its evaluation in `results.json`.',
    table(['cell', 'finished', 'steps', 'training loss (last 10 steps)', 'best validation loss', ...(learned ? ['learned temperature (end)'] : []), 'training time', 'evaluation time'],
      cellRows, ['l', 'l', 'r', 'r', 'r', ...(learned ? ['r' as const] : []), 'r', 'r']));
  parts.push('Every number of this report is in [summary.json](summary.json).');
  return parts.join('\n\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// Pictures

const CHART_CONFIG = { font: 'DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif', background: 'white', view: { stroke: null }, title: { anchor: 'start' as const } };

/** Headline metrics of every row: mean bar, min-max rule, per metric panel. */
export function metricsSpec(s: ExperimentSummary, set: string): TopLevelSpec | null {
  const es = s.evalSets.find((x) => x.name === set)!;
  const names = es.kind === 'lareqa' ? ['mono mAP', 'cross mAP', 'multi mAP'] : SUMMARY_METRICS[es.kind].map((x) => x.name);
  const all = s.metrics[set].all;
  const rows = Object.keys(all);
  const values = rows.flatMap((r) => names.map((m) => ({ row: r === REFERENCE ? 'untrained' : r, metric: m, mean: all[r][m].mean, min: all[r][m].min, max: all[r][m].max })))
    .filter((v) => Number.isFinite(v.mean));
  if (!values.length) return null;
  const order = rows.map((r) => (r === REFERENCE ? 'untrained' : r));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `${set}: mean over seeds (bars) and min–max (lines)` },
    config: CHART_CONFIG,
    data: { values },
    facet: { column: { field: 'metric', type: 'nominal', sort: names, title: null } },
    spec: {
      width: { step: 26 },
      height: 200,
      layer: [
        { mark: { type: 'bar' }, encoding: { x: { field: 'row', type: 'nominal', sort: order, title: null, axis: { labelAngle: -40 } }, y: { field: 'mean', type: 'quantitative', title: 'value' }, color: { field: 'row', type: 'nominal', sort: order, legend: null } } },
        { mark: { type: 'rule', color: 'black' }, encoding: { x: { field: 'row', type: 'nominal', sort: order }, y: { field: 'min', type: 'quantitative' }, y2: { field: 'max' } } },
      ],
    },
  } as TopLevelSpec;
}

/** Language bias: multilingual rank distance per query language, one bar per row. */
export function biasSpec(s: ExperimentSummary, set: string): TopLevelSpec | null {
  const es = s.evalSets.find((x) => x.name === set)!;
  if (es.kind !== 'lareqa' || es.languages.length < 2) return null;
  const pl = s.perLanguage[set];
  const rows = Object.keys(pl);
  const order = rows.map((r) => (r === REFERENCE ? 'untrained' : r));
  const values = rows.flatMap((r) => es.languages.map((l) => ({ row: r === REFERENCE ? 'untrained' : r, lang: l, rd: pl[r][l]['rank distance'].mean })))
    .filter((v) => Number.isFinite(v.rd));
  if (!values.length) return null;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `${set}: language bias (rank distance per query language)`, subtitle: 'multilingual pool, mean over seeds; lower is better' },
    config: CHART_CONFIG,
    data: { values },
    width: Math.min(1400, es.languages.length * (12 * rows.length + 12)),
    height: 220,
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'lang', type: 'nominal', sort: es.languages, title: 'query language', axis: { labelAngle: 0 } },
      xOffset: { field: 'row', type: 'nominal', sort: order },
      y: { field: 'rd', type: 'quantitative', title: 'rank distance' },
      color: { field: 'row', type: 'nominal', sort: order, title: null },
    },
  } as TopLevelSpec;
}

/** The seed average of one variant's LAReQA results (matrices, per-language entries and summary averaged). */
export function averageResults(rs: LareqaResult[], name: string): LareqaResult {
  const n = rs.length;
  const avg = (xs: number[]) => {
    const v = xs.filter((x) => x !== null && !Number.isNaN(x));
    return v.length === xs.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
  };
  const f = rs[0];
  const L = f.languages;
  const mat = (k: 'map' | 'r1') => L.map((_, i) => L.map((_, j) => avg(rs.map((r) => nan(r.matrix[k][i][j])))));
  return {
    ...f,
    model: { path: f.model.path, name: `${name} (mean of ${n} seed${n === 1 ? '' : 's'})` },
    seed: f.seed,
    summary: {
      mono: { map: avg(rs.map((r) => nan(r.summary.mono.map))), r1: avg(rs.map((r) => nan(r.summary.mono.r1))) },
      cross: { map: avg(rs.map((r) => nan(r.summary.cross.map))), r1: avg(rs.map((r) => nan(r.summary.cross.r1))) },
      multi: { map: avg(rs.map((r) => nan(r.summary.multi.map))), r10: avg(rs.map((r) => nan(r.summary.multi.r10))) },
      rankDistance: avg(rs.map((r) => nan(r.summary.rankDistance))),
    },
    matrix: { map: mat('map'), r1: mat('r1') },
    multilingual: Object.fromEntries(L.map((l) => [l, {
      map: avg(rs.map((r) => nan(r.multilingual[l].map))), r10: avg(rs.map((r) => nan(r.multilingual[l].r10))),
      rankDistance: avg(rs.map((r) => nan(r.multilingual[l].rankDistance))), queries: f.multilingual[l].queries,
    }])),
    timing: {
      encodeMs: avg(rs.map((r) => r.timing.encodeMs)), searchMs: avg(rs.map((r) => r.timing.searchMs)),
      metricsMs: avg(rs.map((r) => r.timing.metricsMs)), totalMs: avg(rs.map((r) => r.timing.totalMs)),
    },
  };
}

/**
 * Writes summary.json, the pictures, the per-variant LAReQA reports and report.md (last) into
 * `out`; returns the path of report.md.
 */
export async function writeExperimentReport(
  s: ExperimentSummary, results: CellResults[], reference: CellResults | null, out: string, o: { png?: boolean | 'auto'; log?: (s: string) => void } = {},
): Promise<string> {
  const pngMode = o.png ?? 'auto';
  const warnings: string[] = [];
  const pictures: Record<string, Picture[]> = {};
  const picture = async (spec: TopLevelSpec, base: string, title: string, set: string) => {
    const svg = await renderSvg(spec);
    await writeFileAtomic(join(out, `${base}.svg`), svg);
    let file = `${base}.svg`;
    if (pngMode !== false) {
      try {
        await writeFileAtomic(join(out, `${base}.png`), (await svgToPng(svg)).png);
        file = `${base}.png`;
      } catch (e) {
        if (pngMode === true) throw e;
        const w = `PNG pictures not written (SVG only): ${(e as Error).message}`;
        if (!warnings.includes(w)) warnings.push(w);
      }
    }
    (pictures[set] ??= []).push({ title, file, links: file.endsWith('.png') ? `[SVG](${base}.svg)` : undefined });
  };
  for (const set of s.evalSets) {
    const safe = set.name.replace(/[^A-Za-z0-9._-]/g, '_');
    const ms = metricsSpec(s, set.name);
    if (ms) await picture(ms, `metrics-${safe}`, `${set.name}: headline metrics per variant`, set.name);
    const bs = biasSpec(s, set.name);
    if (bs) await picture(bs, `bias-${safe}`, `${set.name}: language bias per query language`, set.name);
    if (set.kind !== 'lareqa') continue;
    // Per variant (and the reference): the seed-averaged LAReQA report, heatmap included.
    const rows = [...(reference ? [REFERENCE] : []), ...s.variants.map((v) => v.name)];
    for (const row of rows) {
      const rs = (row === REFERENCE ? (reference ? [reference] : []) : results.filter((r) => r.variant === row))
        .map((r) => r.evals.find((e) => e.name === set.name)?.result).filter((r): r is LareqaResult => !!r);
      if (!rs.length) continue;
      const dir = join(out, 'variants', row, safe);
      const paths = await writeReport(averageResults(rs, row === REFERENCE ? 'untrained' : row), dir, { png: pngMode });
      const rel = `variants/${row}/${safe}`;
      (pictures[set.name] ??= []).push({
        title: `${row === REFERENCE ? 'untrained (reference)' : row}: mAP, query × pool language, mean over ${rs.length} seed${rs.length === 1 ? '' : 's'}`,
        file: paths.heatmapPng ? `${rel}/heatmap.png` : `${rel}/heatmap.svg`,
        links: `[report](${rel}/report.md)${paths.heatmapPng ? `, [SVG](${rel}/heatmap.svg)` : ''}`,
      });
    }
  }
  await writeFileAtomic(join(out, 'summary.json'), JSON.stringify(s, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 1) + '\n');
  const md = join(out, 'report.md');
  await writeFileAtomic(md, experimentMarkdown(s, pictures, warnings));
  return md;
}
