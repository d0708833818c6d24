// Reports of LAReQA results: Markdown tables, pictures (SVG, PNG), comparison of runs.
export type { LareqaResult, LareqaSummary, LareqaMultilingualEntry, MapR1 } from './types.ts';
export { validateResult, ResultError } from './types.ts';
export { aggregate, summaryMismatches, type Aggregate, type CrossPairs } from './aggregate.ts';
export { resultTable, summaryTable, matrixTable, languageTable, groupTable, runTable, fmt3, fmtPaper, fmtRank } from './markdown.ts';
export { heatmapSpec, rankDistanceSpec, renderSvg, svgToPng, findFonts, FontError, NO_FONT_HINT, type Png, type FontChoice } from './charts.ts';
export { writeReport, writeFileAtomic, REPORT_FILES, type ReportPaths, type WriteReportOptions } from './write.ts';
export { compareResults, readResult, parseResult, fmtSigned, type LabelledResult, type CompareOptions } from './compare.ts';
