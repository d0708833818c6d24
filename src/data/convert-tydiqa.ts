// TyDi QA GoldP (SQuAD v1.1 JSON, one file per language and split, e.g. swahili_tydiqa_dev.json)
// -> training records (src/data/FORMAT.md). Monolingual: the questions were written in their own
// language and have no translations, so each record is a group of its own (group = question id).
//
// The positive is the whole gold passage (the SQuAD `context`), not the answer sentence: TyDi QA
// gives no sentence breaks, and splitting eleven scripts (Thai, Japanese, ... without sentence
// punctuation) by a heuristic would make wrong positives; the passage is also the unit that
// passage retrieval (MIRACL-style corpora) returns. Passages are short Wikipedia paragraphs.
// Several questions often share a passage (the reader warns `shared_positive`).
//
// Note: GoldP dev is itself an XTREME evaluation set; train on the train files.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { writeJsonl, type TrainingRecord } from './format.ts';
import { isKnownLanguage, TYDI_LANGUAGE_NAMES } from './languages.ts';
import { ReportBuilder, type ConvertReport } from './report.ts';

export interface ConvertTydiqaOptions {
  /** Language of every file; default: from the file name (`swahili_tydiqa_dev.json` -> sw). */
  lang?: string;
  /** `dataset` of every record (default 'tydiqa-goldp'). */
  dataset?: string;
  maxExamples?: number;
}

/** The language code a TyDi QA file name spells out (`swahili_tydiqa_dev.json` -> 'sw'), or null. */
export function tydiqaLanguageOfFile(file: string): string | null {
  const m = /^([a-z]+)_tydiqa/.exec(basename(file).toLowerCase());
  return m && Object.hasOwn(TYDI_LANGUAGE_NAMES, m[1]) ? TYDI_LANGUAGE_NAMES[m[1]] : null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function convertTydiqa(files: string | string[], opts: ConvertTydiqaOptions = {}): { records: TrainingRecord[]; report: ConvertReport } {
  const list = typeof files === 'string' ? [files] : files;
  if (list.length === 0) throw new Error('convertTydiqa: no input files');
  if (opts.lang !== undefined && !isKnownLanguage(opts.lang)) throw new Error(`convertTydiqa: unknown language code ${JSON.stringify(opts.lang)}`);
  const dataset = opts.dataset ?? 'tydiqa-goldp';
  const b = new ReportBuilder(list, opts.maxExamples);
  b.report.notes.push('positive = the gold passage (context)');
  const records: TrainingRecord[] = [];
  const seen = new Set<string>();
  for (const file of list) {
    const lang = opts.lang ?? tydiqaLanguageOfFile(file);
    if (!lang) throw new Error(`${file}: cannot tell the language from the file name (expected e.g. swahili_tydiqa_dev.json); give it with --lang`);
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`TyDi QA file ${file}: ${(e as Error).message}`);
    }
    const fail = (where: string, what: string): never => {
      throw new Error(`${file}: ${where}: ${what}`);
    };
    const arr = (v: unknown, where: string): unknown[] => (Array.isArray(v) ? v : fail(where, 'expected an array'));
    const obj = (v: unknown, where: string): Record<string, unknown> => (isObject(v) ? v : fail(where, 'expected an object'));
    arr(obj(json, 'top level').data, 'data').forEach((a, ai) => {
      arr(obj(a, `data[${ai}]`).paragraphs, `data[${ai}].paragraphs`).forEach((p, pi) => {
        const at = `data[${ai}].paragraphs[${pi}]`;
        const para = obj(p, at);
        arr(para.qas, `${at}.qas`).forEach((q, qi) => {
          const qa = obj(q, `${at}.qas[${qi}]`);
          const id = typeof qa.id === 'string' ? qa.id : `${at}.qas[${qi}]`;
          const where = `${file}: question ${id}`;
          if (seen.has(id)) return b.skip('duplicate_question', where, 'question id seen before');
          seen.add(id);
          // TyDi ids start with the language's English name ("swahili--8211...-4").
          const prefix = id.split('--')[0];
          const named = Object.hasOwn(TYDI_LANGUAGE_NAMES, prefix) ? TYDI_LANGUAGE_NAMES[prefix] : null;
          if (named !== null && named !== lang) return b.skip('language_mismatch', where, `id names ${named}, file is ${lang}`);
          if (!Array.isArray(qa.answers) || qa.answers.length === 0) return b.skip('no_answer', where, 'no answer, so the passage may not answer it');
          // checkRecord reports a missing or non-string question or context (a JSON null stays null).
          const record = { group: qa.id, lang, dataset, query: qa.question, positive: para.context } as TrainingRecord;
          const kept = b.keep(record, where);
          if (kept) records.push(kept);
        });
      });
    });
  }
  return { records, report: b.report };
}

/** Entry point for a CLI: converts and writes `out` (JSONL, atomically); returns the report. */
export async function convertTydiqaToFile(files: string | string[], out: string, opts: ConvertTydiqaOptions = {}): Promise<ConvertReport> {
  const { records, report } = convertTydiqa(files, opts);
  await writeJsonl(out, records);
  return report;
}
