// Line-aligned bitext (two files, line i of one translating line i of the other; the Tatoeba test
// sets are `tatoeba.xxx-eng.xxx` + `tatoeba.xxx-eng.eng`) -> bitext records (src/data/FORMAT.md) for
// the alignment objective: line i gives one group of two records, one per language.
//
// - group = `${stem}:${line}` (1-based line), stem = the common file name without its language
//   extension ('tatoeba.deu-eng'). The English side of Tatoeba differs per pair, so the groups of
//   two pairs must never merge: the stem keeps them apart even when `dataset` is shared.
// - dataset defaults to the stem too, so by default group = dataset:line, and an alignment batch
//   (single-dataset) holds one language pair, as in LaBSE's translation ranking.
// - languages come from the extensions (or options) and are written as ISO 639-1 codes where one
//   exists ('deu' -> 'de', 'eng' -> 'en', 'arq' stays), so that they match the retrieval data's codes.
// - a line empty on either side drops the pair (counted as empty_text); different line counts
//   are an error naming both files: the alignment is then unknown.
//
// Tatoeba is an evaluation set (shared/README.md): do not report Tatoeba accuracy after training on it.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { writeJsonl, type BitextRecord } from './format.ts';
import { canonicalLanguage, isKnownLanguage } from './languages.ts';
import { ReportBuilder, type ConvertReport } from './report.ts';

export interface ConvertBitextOptions {
  /** Language of the first / second file (default: the file's extension, e.g. '.deu'). */
  langA?: string;
  langB?: string;
  /** `dataset` of the records (default: the common stem, e.g. 'tatoeba.deu-eng'). */
  dataset?: string;
  /** Group id prefix (default: the common stem; the file names if they have none). */
  groupPrefix?: string;
  /** Write ISO 639-1 codes where one exists (default true). */
  canonicalLanguages?: boolean;
  maxExamples?: number;
}

function readLines(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`bitext file ${file} cannot be read: ${(e as Error).message}`);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop(); // the final newline ends the last line
  return lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}

export function convertBitext(fileA: string, fileB: string, opts: ConvertBitextOptions = {}): { records: BitextRecord[]; report: ConvertReport } {
  const stemA = basename(fileA, extname(fileA));
  const stemB = basename(fileB, extname(fileB));
  const langOf = (file: string, given: string | undefined, which: string) => {
    const code = given ?? extname(file).slice(1);
    if (!isKnownLanguage(code))
      throw new Error(`convertBitext: ${given === undefined ? `cannot tell the language of ${file} from its extension` : `unknown language code ${JSON.stringify(code)}`}; give it with ${which} (e.g. de or deu)`);
    return opts.canonicalLanguages === false ? code : canonicalLanguage(code);
  };
  const langA = langOf(fileA, opts.langA, '--lang-a');
  const langB = langOf(fileB, opts.langB, '--lang-b');
  if (langA === langB) throw new Error(`convertBitext: both sides are ${langA} (${fileA}, ${fileB})`);
  const stem = stemA === stemB ? stemA : `${basename(fileA)}+${basename(fileB)}`;
  const prefix = opts.groupPrefix ?? stem;
  const dataset = opts.dataset ?? stem;
  if (prefix.trim() === '' || dataset.trim() === '') throw new Error('convertBitext: dataset and groupPrefix must not be empty');

  const a = readLines(fileA);
  const b = readLines(fileB);
  if (a.length !== b.length) throw new Error(`bitext line counts differ: ${fileA} has ${a.length} lines, ${fileB} has ${b.length}`);
  const rb = new ReportBuilder([fileA, fileB], opts.maxExamples);
  const records: BitextRecord[] = [];
  for (let i = 0; i < a.length; i++) {
    const group = `${prefix}:${i + 1}`;
    const empty = a[i].trim() === '' ? fileA : b[i].trim() === '' ? fileB : null;
    // Both records or neither: a group with one member gives the alignment objective nothing.
    if (empty) {
      rb.skip('empty_text', `${empty}:${i + 1}`, 'empty line; the pair is dropped', 2);
      continue;
    }
    // Cannot be skipped now (codes known, nothing empty), but a skip would be counted, not lost.
    const x = rb.keep({ group, lang: langA, dataset, text: a[i] }, `${fileA}:${i + 1}`);
    const y = rb.keep({ group, lang: langB, dataset, text: b[i] }, `${fileB}:${i + 1}`);
    if (x) records.push(x);
    if (y) records.push(y);
  }
  return { records, report: rb.report };
}

/** The two files of a Tatoeba (LASER) pair, `tatoeba.xxx-eng.xxx` and `tatoeba.xxx-eng.eng`. */
export function tatoebaPairFiles(dir: string, code: string): [string, string] {
  return [join(dir, `tatoeba.${code}-eng.${code}`), join(dir, `tatoeba.${code}-eng.eng`)];
}

/** The codes of the Tatoeba pairs in `dir` (`tatoeba.<code>-eng.<code>`), sorted. */
export function tatoebaCodes(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).map((f) => /^tatoeba\.([a-z]{3})-eng\.\1$/.exec(f)?.[1]).filter((c): c is string => !!c && c !== 'eng').sort();
}

/**
 * The code of `code`'s pair in `dir`: itself, or the pair of the same language under another code
 * (sw finds swh, el ell), so that `xlir convert bitext` and `xlir eval --bench tatoeba` take the
 * same names. An absent language is an error listing what the folder has.
 */
export function resolveTatoebaCode(dir: string, code: string): string {
  const present = tatoebaCodes(dir);
  const found = present.includes(code) ? code : present.find((p) => canonicalLanguage(p) === canonicalLanguage(code));
  if (found === undefined)
    throw new Error(`Tatoeba: no pair for ${code} in ${dir} (${present.length ? `it has ${present.length}: ${present.slice(0, 12).join(' ')}${present.length > 12 ? ' ...' : ''}` : 'no tatoeba.xxx-eng.xxx file there'})`);
  return found;
}

/** Entry point for a CLI: converts and writes `out` (JSONL, atomically); returns the report. */
export async function convertBitextToFile(fileA: string, fileB: string, out: string, opts: ConvertBitextOptions = {}): Promise<ConvertReport> {
  const { records, report } = convertBitext(fileA, fileB, opts);
  await writeJsonl(out, records);
  return report;
}
