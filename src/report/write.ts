// Writes the report of one LAReQA result into a directory:
//   result.json        the result itself (2-space JSON), readable again with readResult
//   heatmap.svg/.png   the query x pool mAP matrix
//   rank-distance.svg/.png   multilingual rank distance per query language
//   report.md          the tables of markdown.ts and links to the pictures
// Everything is rendered in memory first, so a rendering error writes nothing. Each file is then
// written atomically (a temporary file in the same directory, flushed, renamed over the target), and
// report.md last: a report.md that exists was written after the files it links to.
// PNGs need a font (charts.ts); with png: 'auto' (the default) a missing font or resvg binary only
// leaves out the PNGs (stale ones from an earlier report are removed), report.md then shows the SVGs
// and says why, and the reason is in `warnings`; png: true makes it an error, png: false skips them.

import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { heatmapSpec, rankDistanceSpec, renderSvg, svgToPng } from './charts.ts';
import { resultTable } from './markdown.ts';
import { validateResult, type LareqaResult } from './types.ts';

export interface ReportPaths {
  dir: string;
  json: string;
  markdown: string;
  heatmapSvg: string;
  rankDistanceSvg: string;
  /** Absent when the PNGs were not made (see warnings). */
  heatmapPng?: string;
  rankDistancePng?: string;
  warnings: string[];
}

export interface WriteReportOptions {
  /** 'auto' (default): PNGs when a font and resvg are available; true: required; false: none. */
  png?: boolean | 'auto';
  /** PNG pixels per SVG pixel (default 2). */
  pngScale?: number;
}

export const REPORT_FILES = {
  json: 'result.json',
  markdown: 'report.md',
  heatmapSvg: 'heatmap.svg',
  heatmapPng: 'heatmap.png',
  rankDistanceSvg: 'rank-distance.svg',
  rankDistancePng: 'rank-distance.png',
} as const;

/** Writes `data` to `path` atomically: temporary file in the same directory, fsync, rename. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

export async function writeReport(result: LareqaResult, dir: string, opts: WriteReportOptions = {}): Promise<ReportPaths> {
  const r = validateResult(result, 'writeReport: result');
  const pngMode = opts.png ?? 'auto';
  const out = resolve(dir);
  const p = (k: keyof typeof REPORT_FILES) => join(out, REPORT_FILES[k]);
  const warnings: string[] = [];

  const heatSvg = await renderSvg(heatmapSpec(r));
  const rankSvg = await renderSvg(rankDistanceSpec(r));
  let pngs: { heat: Buffer; rank: Buffer } | undefined;
  if (pngMode !== false) {
    try {
      const scale = opts.pngScale ?? 2;
      pngs = { heat: (await svgToPng(heatSvg, { scale })).png, rank: (await svgToPng(rankSvg, { scale })).png };
    } catch (e) {
      if (pngMode === true) throw e;
      warnings.push(`PNG pictures not written: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  const md: string[] = [resultTable(r, { level: 1 }).trimEnd(), '## Pictures'];
  const picture = (title: string, svg: string, png: string | undefined) =>
    png ? `![${title}](${png})\n\n${title}: [SVG](${svg}), [PNG](${png})` : `![${title}](${svg})\n\n${title}: [SVG](${svg})`;
  md.push(picture('mAP, query language × pool language', REPORT_FILES.heatmapSvg, pngs && REPORT_FILES.heatmapPng));
  md.push(picture('Rank distance per query language', REPORT_FILES.rankDistanceSvg, pngs && REPORT_FILES.rankDistancePng));
  for (const w of warnings) md.push(`> Note: ${w.replace(/\r?\n/g, ' ')}`);
  md.push(`The result itself: [${REPORT_FILES.json}](${REPORT_FILES.json}).`);

  await mkdir(out, { recursive: true });
  await writeFileAtomic(p('heatmapSvg'), heatSvg);
  await writeFileAtomic(p('rankDistanceSvg'), rankSvg);
  if (pngs) {
    await writeFileAtomic(p('heatmapPng'), pngs.heat);
    await writeFileAtomic(p('rankDistancePng'), pngs.rank);
  } else {
    // a PNG from an earlier report would show other numbers than this one
    await rm(p('heatmapPng'), { force: true });
    await rm(p('rankDistancePng'), { force: true });
  }
  await writeFileAtomic(p('json'), JSON.stringify(r, null, 2) + '\n');
  await writeFileAtomic(p('markdown'), md.join('\n\n') + '\n');

  return {
    dir: out,
    json: p('json'),
    markdown: p('markdown'),
    heatmapSvg: p('heatmapSvg'),
    rankDistanceSvg: p('rankDistanceSvg'),
    ...(pngs ? { heatmapPng: p('heatmapPng'), rankDistancePng: p('rankDistancePng') } : {}),
    warnings,
  };
}
