// The training-data format (src/data/FORMAT.md): JSONL, one retrieval pair or one bitext sentence a
// line. The reader streams the files, checks every line, then checks groups across all files,
// because a parallel group's members may come from different files.
//
// Fatal (throws): a line that is not JSON or not an object, a missing or unreadable file, a file
// whose every line is invalid, bad options. These mean the input as a whole is wrong (a truncated
// write, the wrong file, a typo in a config), and training on what is left would hide it.
// Skipped and counted (report.skipped): problems of single records or groups, which large converted
// corpora have a few of; losing a long run to one bad line helps nobody, and the report names each
// reason with its count and example locations. `strict: true` turns every skip into a throw.
import { mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { readJsonl } from '../jsonl.ts';
import { canonicalLanguage, isKnownLanguage, languageHint } from './languages.ts';

/** A (query, positive) pair in one language; a group's members are translations of the same pair. */
export interface TrainingRecord {
  group: string;
  lang: string;
  dataset: string;
  query: string;
  positive: string;
  negatives?: string[];
}

/** One sentence of a bitext group; a group's members are translations of the same sentence. */
export interface BitextRecord {
  group: string;
  lang: string;
  dataset: string;
  text: string;
}

export const SKIP_REASONS = [
  'missing_field', // a required field absent or null
  'wrong_type', // a field of the wrong JSON type
  'ambiguous_kind', // both retrieval fields (query/positive/negatives) and `text`
  'unknown_language', // not a bare lowercase code of the language table
  'empty_text', // an empty or whitespace-only string (group, dataset, query, positive, a negative, text)
  'duplicate_exact', // same group, language and content as an earlier record: the later ones are dropped
  'duplicate_conflict', // same group and language, different content: all of them are dropped
  'mixed_datasets', // a group whose members name different datasets: the whole group is dropped
] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

export const WARNING_KINDS = [
  'unknown_field', // kept; a field the format does not define (often a misspelt `negatives`)
  'empty_file', // a file with no records
  'language_under_two_codes', // e.g. 'de' and 'deu' both present: samplers would see two languages
  'shared_positive', // retrieval records of different groups with the same positive (dataset, lang)
  'shared_text', // bitext records of different groups with the same text (dataset, lang)
] as const;
export type WarningKind = (typeof WARNING_KINDS)[number];

export interface Issue {
  count: number;
  /** Up to `maxExamples` of them, as "file:line: detail". */
  examples: string[];
}

export interface ReadReport {
  files: string[];
  /** Non-empty lines read. */
  lines: number;
  kept: {
    records: number;
    bitext: number;
    /** Retrieval records and bitext records together, by language code as written. */
    byLanguage: Record<string, number>;
    byDataset: Record<string, number>;
  };
  skipped: Record<SkipReason, Issue>;
  skippedTotal: number;
  warnings: Record<WarningKind, Issue>;
  /** Valid records removed because their language is held out (not an error). */
  heldOut: { records: number; bitext: number; byLanguage: Record<string, number> };
}

export interface ReadOptions {
  /**
   * Languages kept out of training (zero-shot evaluation languages). Compared by canonical code,
   * so holding out 'el' also removes Tatoeba-style 'ell'.
   */
  heldOutLanguages?: string[];
  /** Example locations kept per reason (default 5). */
  maxExamples?: number;
  /** Throw on the first record that would be skipped. */
  strict?: boolean;
}

export interface TrainingData {
  records: TrainingRecord[];
  bitext: BitextRecord[];
  report: ReadReport;
}

const RETRIEVAL_FIELDS = new Set(['group', 'lang', 'dataset', 'query', 'positive', 'negatives']);
const BITEXT_FIELDS = new Set(['group', 'lang', 'dataset', 'text']);

export type CheckedLine =
  | { kind: 'retrieval'; record: TrainingRecord; unknownFields: string[] }
  | { kind: 'bitext'; record: BitextRecord; unknownFields: string[] }
  | { kind: 'skip'; reason: SkipReason; detail: string };

const blank = (s: string) => s.trim() === '';
const typeName = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

/** Checks one parsed line against the format. Pure: the reader and the converters' tests share it. */
export function checkRecord(v: Record<string, unknown>): CheckedLine {
  const skip = (reason: SkipReason, detail: string): CheckedLine => ({ kind: 'skip', reason, detail });
  const isBitext = 'text' in v;
  const isRetrieval = 'query' in v || 'positive' in v || 'negatives' in v;
  if (isBitext && isRetrieval) return skip('ambiguous_kind', 'has both `text` (bitext) and query/positive/negatives (retrieval)');
  if (!isBitext && !isRetrieval) return skip('missing_field', 'neither query/positive (retrieval) nor text (bitext)');
  const strings = isBitext ? ['group', 'lang', 'dataset', 'text'] : ['group', 'lang', 'dataset', 'query', 'positive'];
  // Absence is reported before types, types before content, so a record gets its most basic problem.
  for (const f of strings) if (v[f] === undefined || v[f] === null) return skip('missing_field', `no \`${f}\``);
  for (const f of strings) if (typeof v[f] !== 'string') return skip('wrong_type', `\`${f}\` is ${typeName(v[f])}, expected string`);
  const neg = v.negatives;
  if (neg !== undefined) {
    if (!Array.isArray(neg)) return skip('wrong_type', `\`negatives\` is ${typeName(neg)}, expected array of strings`);
    const bad = neg.findIndex((x) => typeof x !== 'string');
    if (bad >= 0) return skip('wrong_type', `\`negatives[${bad}]\` is ${typeName(neg[bad])}, expected string`);
  }
  const lang = v.lang as string;
  if (!isKnownLanguage(lang)) {
    const hint = languageHint(lang);
    return skip('unknown_language', `unknown language code ${JSON.stringify(lang)}${hint ? ` (did you mean '${hint}'?)` : ''}`);
  }
  for (const f of strings) if (f !== 'lang' && blank(v[f] as string)) return skip('empty_text', `\`${f}\` is empty`);
  if (neg !== undefined) {
    const e = (neg as string[]).findIndex(blank);
    if (e >= 0) return skip('empty_text', `\`negatives[${e}]\` is empty`);
  }
  const known = isBitext ? BITEXT_FIELDS : RETRIEVAL_FIELDS;
  const unknownFields = Object.keys(v).filter((k) => !known.has(k));
  const base = { group: v.group as string, lang, dataset: v.dataset as string };
  if (isBitext) return { kind: 'bitext', record: { ...base, text: v.text as string }, unknownFields };
  const record: TrainingRecord = { ...base, query: v.query as string, positive: v.positive as string };
  if (neg !== undefined) record.negatives = [...(neg as string[])];
  return { kind: 'retrieval', record, unknownFields };
}

const emptyIssues = <K extends string>(keys: readonly K[]) =>
  Object.fromEntries(keys.map((k) => [k, { count: 0, examples: [] as string[] }])) as Record<K, Issue>;

/**
 * Reads training data (retrieval pairs and bitext, mixed freely across and within files), checks it,
 * and returns what is valid with a report of everything left out. Files are streamed line by line;
 * the records themselves are held in memory.
 */
export async function readTrainingData(paths: string[], opts: ReadOptions = {}): Promise<TrainingData> {
  const maxExamples = opts.maxExamples ?? 5;
  const heldOut = new Set<string>();
  for (const l of opts.heldOutLanguages ?? []) {
    if (!isKnownLanguage(l)) throw new Error(`heldOutLanguages: unknown language code ${JSON.stringify(l)}`);
    heldOut.add(canonicalLanguage(l));
  }
  if (paths.length === 0) throw new Error('readTrainingData: no input files');
  for (const p of paths) {
    const s = await stat(p).catch(() => null);
    if (!s) throw new Error(`training data file not found: ${p}`);
    if (!s.isFile()) throw new Error(`training data path is not a file: ${p}`);
  }

  const report: ReadReport = {
    files: [...paths],
    lines: 0,
    kept: { records: 0, bitext: 0, byLanguage: {}, byDataset: {} },
    skipped: emptyIssues(SKIP_REASONS),
    skippedTotal: 0,
    warnings: emptyIssues(WARNING_KINDS),
    heldOut: { records: 0, bitext: 0, byLanguage: {} },
  };
  const note = (issue: Issue, where: string, detail: string) => {
    issue.count++;
    if (issue.examples.length < maxExamples) issue.examples.push(`${where}: ${detail}`);
  };
  const skip = (reason: SkipReason, where: string, detail: string) => {
    if (opts.strict) throw new Error(`${where}: ${detail} (${reason})`);
    note(report.skipped[reason], where, detail);
    report.skippedTotal++;
  };

  // Locations are kept as (file index, line) numbers: a string per record would double the memory
  // of a large corpus just to name the few that end up in a report.
  const kinds = { retrieval: new Kind<TrainingRecord>(), bitext: new Kind<BitextRecord>() };
  for (let fi = 0; fi < paths.length; fi++) {
    const path = paths[fi];
    let lines = 0;
    let valid = 0;
    let firstProblem = '';
    for await (const { line, value } of readJsonl(path)) {
      lines++;
      const c = checkRecord(value);
      const where = `${path}:${line}`;
      if (c.kind === 'skip') {
        if (!firstProblem) firstProblem = `${where}: ${c.detail}`;
        skip(c.reason, where, c.detail);
        continue;
      }
      valid++;
      if (c.unknownFields.length) note(report.warnings.unknown_field, where, `unknown field(s) ${c.unknownFields.join(', ')} ignored`);
      if (c.kind === 'retrieval') kinds.retrieval.add(c.record, fi, line);
      else kinds.bitext.add(c.record, fi, line);
    }
    report.lines += lines;
    if (lines === 0) note(report.warnings.empty_file, path, 'no records');
    else if (valid === 0) throw new Error(`${path}: none of its ${lines} lines is a valid record (first: ${firstProblem})`);
  }

  const loc = (k: Kind<unknown>, i: number) => `${paths[k.file[i]]}:${k.line[i]}`;
  const sameRetrieval = (a: TrainingRecord, b: TrainingRecord) =>
    a.query === b.query && a.positive === b.positive && JSON.stringify(a.negatives ?? []) === JSON.stringify(b.negatives ?? []);
  const sameBitext = (a: BitextRecord, b: BitextRecord) => a.text === b.text;
  const keepR = checkGroups(kinds.retrieval, sameRetrieval, (r, i, d) => skip(r, loc(kinds.retrieval, i), d));
  const keepB = checkGroups(kinds.bitext, sameBitext, (r, i, d) => skip(r, loc(kinds.bitext, i), d));

  const records: TrainingRecord[] = [];
  const bitext: BitextRecord[] = [];
  const keptR: number[] = [];
  const keptB: number[] = [];
  const codes = new Map<string, Set<string>>();
  const select = <T extends { lang: string; dataset: string }>(k: Kind<T>, keep: boolean[], out: T[], idx: number[], key: 'records' | 'bitext') => {
    for (let i = 0; i < k.items.length; i++) {
      if (!keep[i]) continue;
      const r = k.items[i];
      if (heldOut.has(canonicalLanguage(r.lang))) {
        report.heldOut[key]++;
        report.heldOut.byLanguage[r.lang] = (report.heldOut.byLanguage[r.lang] ?? 0) + 1;
        continue;
      }
      out.push(r);
      idx.push(i);
      report.kept.byLanguage[r.lang] = (report.kept.byLanguage[r.lang] ?? 0) + 1;
      report.kept.byDataset[r.dataset] = (report.kept.byDataset[r.dataset] ?? 0) + 1;
      const c = canonicalLanguage(r.lang);
      if (!codes.has(c)) codes.set(c, new Set());
      codes.get(c)!.add(r.lang);
    }
  };
  select(kinds.retrieval, keepR, records, keptR, 'records');
  select(kinds.bitext, keepB, bitext, keptB, 'bitext');
  report.kept.records = records.length;
  report.kept.bitext = bitext.length;

  for (const set of codes.values())
    if (set.size > 1) note(report.warnings.language_under_two_codes, [...set].join(', '), 'one language under several codes; write one of them');
  // In-batch negatives assume every other positive in a batch is wrong for a query; two groups with
  // the same positive text break that unless the sampler keeps them apart, so say how often it happens.
  sharedTexts(records, (r) => r.positive, keptR, (i, g) => note(report.warnings.shared_positive, loc(kinds.retrieval, i), `positive also used by group ${JSON.stringify(g)}`));
  sharedTexts(bitext, (r) => r.text, keptB, (i, g) => note(report.warnings.shared_text, loc(kinds.bitext, i), `text also used by group ${JSON.stringify(g)}`));

  return { records, bitext, report };
}

/** A few lines for a terminal: what was kept, held out, skipped (with examples) and warned about. */
export function formatReadReport(r: ReadReport): string {
  const counts = (m: Record<string, number>) =>
    Object.entries(m)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
  const out = [
    `read ${r.lines} line(s) from ${r.files.length} file(s): kept ${r.kept.records} retrieval and ${r.kept.bitext} bitext record(s)`,
    `  by language: ${counts(r.kept.byLanguage) || 'none'}`,
    `  by dataset: ${counts(r.kept.byDataset) || 'none'}`,
  ];
  if (r.heldOut.records + r.heldOut.bitext > 0) out.push(`held out ${r.heldOut.records} retrieval and ${r.heldOut.bitext} bitext record(s): ${counts(r.heldOut.byLanguage)}`);
  const issues = (title: string, m: Record<string, Issue>) => {
    for (const [k, i] of Object.entries(m)) {
      if (i.count === 0) continue;
      out.push(`${title} ${k}: ${i.count}`);
      for (const e of i.examples) out.push(`    ${e}`);
    }
  };
  out.push(r.skippedTotal === 0 ? 'skipped none' : `skipped ${r.skippedTotal}:`);
  issues('  skipped', r.skipped);
  issues('  warning', r.warnings);
  return out.join('\n');
}

class Kind<T> {
  items: T[] = [];
  file: number[] = [];
  line: number[] = [];
  add(item: T, file: number, line: number) {
    this.items.push(item);
    this.file.push(file);
    this.line.push(line);
  }
}

/** Group-level checks; returns which records stay. */
function checkGroups<T extends { group: string; lang: string; dataset: string }>(
  k: Kind<T>,
  same: (a: T, b: T) => boolean,
  skip: (reason: SkipReason, index: number, detail: string) => void,
): boolean[] {
  const keep = new Array<boolean>(k.items.length).fill(true);
  const groups = new Map<string, number[]>();
  k.items.forEach((r, i) => {
    const g = groups.get(r.group);
    if (g) g.push(i);
    else groups.set(r.group, [i]);
  });
  for (const [group, members] of groups) {
    if (members.length === 1) continue;
    const datasets = [...new Set(members.map((i) => k.items[i].dataset))];
    if (datasets.length > 1) {
      // Usually two converters minted the same id for unrelated items; which members belong
      // together cannot be told, so none is trusted.
      for (const i of members) {
        keep[i] = false;
        skip('mixed_datasets', i, `group ${JSON.stringify(group)} mixes datasets ${datasets.join(', ')}`);
      }
      continue;
    }
    const byLang = new Map<string, number[]>();
    for (const i of members) {
      const l = byLang.get(k.items[i].lang);
      if (l) l.push(i);
      else byLang.set(k.items[i].lang, [i]);
    }
    for (const [lang, same_lang] of byLang) {
      if (same_lang.length === 1) continue;
      const first = same_lang[0];
      if (same_lang.every((i) => same(k.items[i], k.items[first]))) {
        for (const i of same_lang.slice(1)) {
          keep[i] = false;
          skip('duplicate_exact', i, `repeats group ${JSON.stringify(group)} lang ${lang}`);
        }
      } else {
        // Two different texts claim to be the same translation: neither can be preferred.
        for (const i of same_lang) {
          keep[i] = false;
          skip('duplicate_conflict', i, `group ${JSON.stringify(group)} has ${same_lang.length} different ${lang} records`);
        }
      }
    }
  }
  return keep;
}

function sharedTexts<T extends { group: string; lang: string; dataset: string }>(
  items: T[],
  text: (r: T) => string,
  index: number[],
  warn: (index: number, otherGroup: string) => void,
) {
  // Nested maps keyed by the record's own strings: no concatenated key to allocate per record.
  const seen = new Map<string, Map<string, Map<string, { first: string; second?: string; n: number }>>>();
  const entry = (r: T) => {
    let a = seen.get(r.dataset);
    if (!a) seen.set(r.dataset, (a = new Map()));
    let b = a.get(r.lang);
    if (!b) a.set(r.lang, (b = new Map()));
    let e = b.get(text(r));
    if (!e) b.set(text(r), (e = { first: r.group, n: 0 }));
    return e;
  };
  for (const r of items) {
    const e = entry(r);
    if (e.n === 1) e.second = r.group;
    e.n++;
  }
  items.forEach((r, j) => {
    const e = entry(r);
    if (e.n > 1) warn(index[j], r.group === e.first ? e.second! : e.first);
  });
}

/**
 * Writes records as JSONL atomically: into a temporary file beside `path`, flushed to disk, then
 * renamed over it, so a reader never sees a half-written file and an interrupted write leaves the
 * previous file intact. Returns the number of lines written.
 */
export async function writeJsonl(path: string, records: Iterable<unknown> | AsyncIterable<unknown>): Promise<number> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  const fh = await open(tmp, 'wx');
  let n = 0;
  try {
    let buf: string[] = [];
    let size = 0;
    for await (const r of records as AsyncIterable<unknown>) {
      const s = JSON.stringify(r);
      if (s === undefined) throw new Error(`writeJsonl ${path}: item ${n} is not JSON-serialisable`);
      buf.push(s, '\n');
      size += s.length + 1;
      n++;
      if (size >= 1 << 20) {
        await fh.writeFile(buf.join('')); // writeFile, unlike write, loops until all is written
        buf = [];
        size = 0;
      }
    }
    if (buf.length) await fh.writeFile(buf.join(''));
    await fh.sync();
    await fh.close();
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  return n;
}
