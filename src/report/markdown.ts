// Markdown tables of one LAReQA result (docs/METHOD.md sections 5 and 6): the summary as in the
// paper (mAP mono / cross / multi, R@1, R@10, rank distance), the full query x pool mAP and R@1
// matrices, the per-language table and, when the result names language groups, per-group averages.
//
// Number formats: mAP and recall with 3 decimals (0.792; the paper's tables write .792, given on one
// line for direct comparison with METHOD.md section 6), rank distance (in ranks) with 1 decimal,
// a missing value (an empty setting) as "–".

import { aggregate, offDiagonalMean, summaryMismatches } from './aggregate.ts';
import type { LareqaResult } from './types.ts';

export const DASH = '–';

/** mAP / recall: 3 decimals, "–" for NaN. */
export function fmt3(x: number): string {
  return Number.isFinite(x) ? x.toFixed(3) : DASH;
}

/** As the paper's tables: 3 decimals without the leading zero (.792, -.012, 1.000). */
/** A p-value: three decimals, or "<0.001". */
export function fmtP(p: number): string {
  if (!Number.isFinite(p)) return DASH;
  return p < 0.001 ? '<0.001' : p.toFixed(3);
}

export function fmtPaper(x: number): string {
  return Number.isFinite(x) ? x.toFixed(3).replace(/^(-?)0\./, '$1.') : DASH;
}

/** Rank distance: 1 decimal. */
export function fmtRank(x: number): string {
  return Number.isFinite(x) ? x.toFixed(1) : DASH;
}

/** Escapes text for a Markdown table cell (pipes, newlines). */
export function cell(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

/** Inline code span that survives backticks in the text. */
export function code(s: string): string {
  const ticks = (s.match(/`+/g) ?? []).reduce((m, t) => Math.max(m, t.length), 0);
  const fence = '`'.repeat(ticks + 1);
  const pad = s.startsWith('`') || s.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${s}${pad}${fence}`;
}

export function table(header: string[], rows: string[][], align?: ('l' | 'r')[]): string {
  const sep = header.map((_, i) => ((align?.[i] ?? 'l') === 'r' ? '---:' : '---'));
  return [header, sep, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

export function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/** A model's training run as recorded in its folder (xlir_training.json): seed, steps, run key. */
export function trainedBy(run: Record<string, unknown>): string {
  return [run.seed !== undefined ? `seed ${cell(String(run.seed))}` : '', run.steps !== undefined ? `${cell(String(run.steps))} steps` : '',
    typeof run.runKey === 'string' ? `run key ${code(run.runKey)}` : '', typeof run.out === 'string' ? `in ${code(run.out)}` : ''].filter(Boolean).join(', ');
}

/** The run: bench, model, data, seed, version, timing, options. */
export function runTable(r: LareqaResult): string {
  const model = [code(r.model.path), r.model.name ? `(${cell(r.model.name)})` : '', r.model.sha256 ? `sha256 ${code(r.model.sha256.slice(0, 16))}` : '']
    .filter(Boolean)
    .join(' ');
  const data = [code(r.data.dir), r.data.articles ? `articles: ${cell(r.data.articles)}` : ''].filter(Boolean).join(', ');
  const t = r.timing;
  const opts = Object.entries(r.options)
    .map(([k, v]) => code(`${k}=${JSON.stringify(v)}`))
    .join(' ');
  const rows: string[][] = [
    ['bench', cell(r.bench)],
    ['languages', cell(r.languages.join(' '))],
    ['model', model],
    ...(r.model.run ? [['trained', trainedBy(r.model.run)]] : []),
    ['data', data],
    ['seed', String(r.seed)],
    ['xlir', cell(r.xlir)],
    ['created', cell(r.created)],
    ['time', `${seconds(t.totalMs)} (encode ${seconds(t.encodeMs)}, search ${seconds(t.searchMs)}, metrics ${seconds(t.metricsMs)})`],
  ];
  if (opts) rows.push(['options', opts]);
  return table(['run', ''], rows);
}

/** The summary as in the paper: one row per setting, with the number of settings averaged. */
export function summaryTable(r: LareqaResult): string {
  const s = r.summary;
  // settings with a value (a setting without any query, NaN, is not averaged)
  const n = aggregate(r).settings;
  const rows = [
    ['monolingual', plural(n.mono, 'language', 'languages'), fmt3(s.mono.map), fmt3(s.mono.r1), DASH, DASH],
    ['cross-lingual', plural(n.cross, 'language pair', 'language pairs'), fmt3(s.cross.map), fmt3(s.cross.r1), DASH, DASH],
    ['multilingual', plural(n.multi, 'query language', 'query languages'), fmt3(s.multi.map), DASH, fmt3(s.multi.r10), fmtRank(s.rankDistance)],
  ];
  return [
    table(['setting', 'macro-average over', 'mAP', 'R@1', 'R@10', 'rank distance'], rows, ['l', 'l', 'r', 'r', 'r', 'r']),
    '',
    `mAP mono / cross / multi, as in the paper's tables (METHOD.md section 6): **${fmtPaper(s.mono.map)} / ${fmtPaper(s.cross.map)} / ${fmtPaper(s.multi.map)}**`,
    '',
    `Rank distance: for each question, the largest minus the smallest rank of its answers (one per language) in the multilingual pool, ` +
      `averaged per query language, then over them; lower is better (the answers come up together whatever their language). ` +
      `A random ranking gives about ${fmtRank(randomRankDistance(r))} here.`,
  ].join('\n');
}

/**
 * Expected rank distance of a random ranking: for L answers placed at random among N candidates,
 * E[max rank - min rank] = (N + 1)(L - 1) / (L + 1). N is the multilingual pool (every language's
 * candidates), L the number of languages (one answer each, as in XQuAD-R; MLQA-R's questions have
 * some languages without an answer, so there it is an approximation).
 */
export function randomRankDistance(r: LareqaResult): number {
  const n = r.languages.reduce((s, l) => s + r.counts.candidates[l], 0), L = r.languages.length;
  return ((n + 1) * (L - 1)) / (L + 1);
}

/**
 * The full query-language x pool-language matrix of `metric`: rows are query languages, columns
 * pool languages, the diagonal (monolingual) in bold; a last column with each query language's
 * mean over the other pools and a last row with each pool language's mean over the other query
 * languages.
 */
export function matrixTable(r: LareqaResult, metric: 'map' | 'r1'): string {
  const m = r.matrix[metric];
  const L = r.languages;
  const header = ['query \\ pool', ...L.map(cell), 'cross (as query)'];
  const rows = L.map((lq, i) => [
    `**${cell(lq)}**`,
    ...L.map((_, j) => (i === j ? `**${fmt3(m[i][j])}**` : fmt3(m[i][j]))),
    fmt3(offDiagonalMean(m, i, 'row')),
  ]);
  rows.push(['cross (as pool)', ...L.map((_, j) => fmt3(offDiagonalMean(m, j, 'column'))), '']);
  return table(header, rows, ['l', ...L.map(() => 'r' as const), 'r']);
}

/** One row per language: data counts, its monolingual cell, its cross-lingual means, its multilingual entry. */
export function languageTable(r: LareqaResult): string {
  const m = r.matrix;
  const rows = r.languages.map((l, i) => {
    const e = r.multilingual[l];
    return [
      cell(l),
      String(r.counts.questions[l]),
      String(r.counts.candidates[l]),
      fmt3(m.map[i][i]),
      fmt3(m.r1[i][i]),
      fmt3(offDiagonalMean(m.map, i, 'row')),
      fmt3(offDiagonalMean(m.map, i, 'column')),
      fmt3(e.map),
      fmt3(e.r10),
      fmtRank(e.rankDistance),
      String(e.queries),
    ];
  });
  return table(
    ['language', 'questions', 'candidates', 'mono mAP', 'mono R@1', 'cross mAP (as query)', 'cross mAP (as pool)', 'multi mAP', 'multi R@10', 'rank distance', 'multi queries'],
    rows,
    ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  );
}

/**
 * Per language group (r.groups): mono over the group's languages; cross over every ordered pair
 * (query != pool) whose query language OR pool language is in the group, the other side any
 * evaluated language (so a group's cross-lingual number covers retrieval both from and into its
 * languages: for a zero-shot group, every pair that involves an unseen language); multilingual
 * mAP, R@10 and rank distance averaged over the group's languages as query languages (the pool is
 * still all languages). Group languages the run did not evaluate are listed and left out.
 * Returns '' when the result has no groups.
 */
export function groupTable(r: LareqaResult): string {
  if (!r.groups || Object.keys(r.groups).length === 0) return '';
  const evaluated = new Set(r.languages);
  const rows = Object.entries(r.groups).map(([name, members]) => {
    const present = members.filter((l) => evaluated.has(l));
    const missing = members.filter((l) => !evaluated.has(l));
    const a = aggregate(r, present, 'either');
    const langs = (present.length ? present.join(' ') : DASH) + (missing.length ? ` (not evaluated: ${missing.join(' ')})` : '');
    return [
      cell(name),
      cell(langs),
      fmt3(a.mono.map),
      fmt3(a.mono.r1),
      fmt3(a.cross.map),
      fmt3(a.cross.r1),
      String(a.settings.cross),
      fmt3(a.multi.map),
      fmt3(a.multi.r10),
      fmtRank(a.rankDistance),
    ];
  });
  return [
    table(
      ['group', 'languages', 'mono mAP', 'mono R@1', 'cross mAP', 'cross R@1', 'cross pairs', 'multi mAP', 'multi R@10', 'rank distance'],
      rows,
      ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
    'Group averages: mono over the group\'s languages; cross over the ordered pairs (query ≠ pool) whose query **or** pool language is in the group ' +
      '(the other side any evaluated language); multi, R@10 and rank distance over the group\'s languages as query languages, the pool being all languages.',
  ].join('\n');
}

export interface ResultTableOptions {
  /** Heading level of the title (default 2: "##"); sections are one level below. */
  level?: number;
  /** Leave out the R@1 matrix (default: included). */
  noR1Matrix?: boolean;
}

/** The whole Markdown report of one result (no pictures: see write.ts). */
export function resultTable(r: LareqaResult, opts: ResultTableOptions = {}): string {
  const h = '#'.repeat(opts.level ?? 2);
  const hh = h + '#';
  const parts: string[] = [];
  parts.push(`${h} LAReQA: ${cell(r.bench)}, ${plural(r.languages.length, 'language', 'languages')}${r.model.name ? `, ${cell(r.model.name)}` : ''}`);
  parts.push(runTable(r));
  const mismatch = summaryMismatches(r);
  if (mismatch.length) parts.push(mismatch.map((m) => `> **Warning:** ${cell(m)}`).join('\n>\n'));
  parts.push(`${hh} Summary`, summaryTable(r));
  parts.push(
    `${hh} mAP, query language × pool language`,
    'Rows: query language; columns: pool (candidate) language; the diagonal (bold) is the monolingual setting, the other cells the cross-lingual settings.',
    matrixTable(r, 'map'),
  );
  if (!opts.noR1Matrix) parts.push(`${hh} R@1, query language × pool language`, matrixTable(r, 'r1'));
  parts.push(`${hh} Per language`, 'Multilingual columns: the query language\'s queries against the pool of all languages.', languageTable(r));
  const g = groupTable(r);
  if (g) parts.push(`${hh} Language groups`, g);
  return parts.join('\n\n') + '\n';
}
