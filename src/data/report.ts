// What a converter kept and what it left out. Converters never drop an item silently: every skip
// has a reason, a count and a few example locations, and `formatConvertReport` prints them.
import { checkRecord, type BitextRecord, type Issue, type TrainingRecord } from './format.ts';

export interface ConvertReport {
  /** The files read. */
  inputs: string[];
  /** Records written (retrieval records, or bitext records for convert-bitext). */
  kept: number;
  byLanguage: Record<string, number>;
  /** Reason -> count and up to `maxExamples` "location: detail" strings. */
  skipped: Record<string, Issue>;
  skippedTotal: number;
  /** Facts worth printing that are not skips (the article split, the positive chosen, ...). */
  notes: string[];
}

export class ReportBuilder {
  readonly report: ConvertReport;
  constructor(inputs: string[], private readonly maxExamples = 5) {
    this.report = { inputs: [...inputs], kept: 0, byLanguage: {}, skipped: {}, skippedTotal: 0, notes: [] };
  }

  skip(reason: string, where: string, detail: string, count = 1): void {
    const issue = (this.report.skipped[reason] ??= { count: 0, examples: [] });
    issue.count += count;
    this.report.skippedTotal += count;
    if (issue.examples.length < this.maxExamples) issue.examples.push(`${where}: ${detail}`);
  }

  /**
   * Checks a converted record with the reader's own checker (src/data/format.ts), so a converter
   * cannot write a line the reader would skip; returns the checked record, or null after counting
   * the skip under the reader's reason.
   */
  keep<T extends TrainingRecord | BitextRecord>(record: T, where: string): T | null {
    const c = checkRecord(record as unknown as Record<string, unknown>);
    if (c.kind === 'skip') {
      this.skip(c.reason, where, c.detail);
      return null;
    }
    this.report.kept++;
    this.report.byLanguage[record.lang] = (this.report.byLanguage[record.lang] ?? 0) + 1;
    return c.record as T;
  }
}

/** A few lines for a terminal: what was kept, by language, and every skip reason with examples. */
export function formatConvertReport(r: ConvertReport): string {
  const langs = Object.entries(r.byLanguage)
    .map(([l, n]) => `${l} ${n}`)
    .join(', ');
  const out = [`kept ${r.kept} record(s)${langs ? ` (${langs})` : ''} from ${r.inputs.length} file(s)`];
  for (const n of r.notes) out.push(`  ${n}`);
  out.push(r.skippedTotal === 0 ? 'skipped none' : `skipped ${r.skippedTotal}:`);
  for (const [reason, issue] of Object.entries(r.skipped)) {
    out.push(`  ${reason}: ${issue.count}`);
    for (const e of issue.examples) out.push(`    ${e}`);
  }
  return out.join('\n');
}
