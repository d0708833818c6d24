// Pictures of one LAReQA result: a heatmap of the query x pool mAP matrix and a bar chart of the
// multilingual rank distance per query language. Vega-Lite specs, compiled to Vega and rendered to
// SVG in Node without a browser (vega View with renderer 'none', toSVG), then rasterized to PNG by
// resvg (@resvg/resvg-js: a Rust SVG renderer shipped as a prebuilt N-API binary in a per-platform
// optional npm dependency, e.g. @resvg/resvg-js-linux-x64-gnu; no network, no browser, no canvas).
//
// Fonts. resvg draws text only with fonts it has loaded; with none, the PNG has no text at all (and
// no error). findFonts() picks font files in this order: XLIR_FONT_FILES (paths separated by ':'),
// known files of common families (DejaVu Sans on Debian/Ubuntu: apt package fonts-dejavu-core;
// Liberation, Noto, macOS and Windows fonts), else every .ttf/.otf/.ttc under the usual font
// directories. resvg falls back to a loaded font when the SVG's family is not among them, so any
// font gives readable labels. svgToPng() throws a FontError (saying which package to install) when
// no font is found, rather than write a PNG without text.

import { existsSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';
import { fmt3, fmtRank } from './markdown.ts';
import type { LareqaResult } from './types.ts';

/** Font list written into the SVGs (browsers pick the first they have; resvg is given files, see findFonts). */
export const CHART_FONT = 'DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif';

const CONFIG = {
  font: CHART_FONT,
  background: 'white',
  view: { stroke: null },
  axis: { labelFontSize: 11, titleFontSize: 12 },
  title: { fontSize: 13, anchor: 'start' as const },
};

/** Heatmap of r.matrix.map: rows query language, columns pool language, each cell labelled with its mAP; the diagonal (monolingual) outlined. */
export function heatmapSpec(r: LareqaResult, opts: { cell?: number } = {}): TopLevelSpec {
  const L = r.languages;
  const values: { query: string; pool: string; map: number; label: string; mono: boolean }[] = [];
  let lo = Infinity;
  let hi = -Infinity;
  L.forEach((q, i) =>
    L.forEach((p, j) => {
      const v = r.matrix.map[i][j];
      if (!Number.isNaN(v)) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      values.push({ query: q, pool: p, map: v, label: fmt3(v), mono: i === j });
    }),
  );
  const mid = (lo + hi) / 2;
  const step = opts.cell ?? 44;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `${r.bench}: mAP, query language × pool language`, subtitle: `diagonal (outlined) = monolingual; mono ${fmt3(r.summary.mono.map)}, cross ${fmt3(r.summary.cross.map)}` },
    config: CONFIG,
    width: { step },
    height: { step },
    data: { values },
    encoding: {
      x: { field: 'pool', type: 'nominal', sort: L, title: 'pool language', axis: { orient: 'top', labelAngle: 0 } },
      y: { field: 'query', type: 'nominal', sort: L, title: 'query language' },
    },
    layer: [
      {
        // a missing cell (NaN: no query of that language has an answer in that pool) has no colour, only its "–" label
        transform: [{ filter: 'isValid(datum.map) && isFinite(datum.map)' }],
        mark: { type: 'rect' },
        encoding: { color: { field: 'map', type: 'quantitative', title: 'mAP', scale: { scheme: 'viridis' } } },
      },
      {
        // the monolingual diagonal, outlined on top of the cells (a stroke on the cell itself is half covered by its neighbours)
        transform: [{ filter: 'datum.mono' }],
        mark: { type: 'rect', fill: null, stroke: 'black', strokeWidth: 2 },
      },
      {
        mark: { type: 'text', fontSize: step >= 40 ? 10 : 8 },
        encoding: {
          text: { field: 'label', type: 'nominal' },
          // viridis is dark at the low end: white labels on the lower half of the value range
          color: { condition: { test: `datum.map < ${mid}`, value: 'white' }, value: 'black' },
        },
      },
    ],
  } as TopLevelSpec;
}

/** Bars of the multilingual rank distance per query language, labelled, with the macro-average as a rule. */
export function rankDistanceSpec(r: LareqaResult, opts: { bar?: number } = {}): TopLevelSpec {
  // a missing value (NaN) gets no bar and its "–" label at 0
  const values = r.languages.map((l) => {
    const v = r.multilingual[l].rankDistance;
    return { lang: l, rankDistance: Number.isNaN(v) ? 0 : v, label: fmtRank(v) };
  });
  const avg = r.summary.rankDistance;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `${r.bench}: rank distance per query language`,
      // short lines: without a canvas, vega estimates text widths generously and a long subtitle widens the picture
      subtitle: [
        'max rank − min rank of the parallel answers',
        Number.isNaN(avg) ? 'multilingual pool; no value (needs answers in 2+ languages)' : `multilingual pool; lower is better; mean ${fmtRank(avg)} (dashed)`,
      ],
    },
    config: CONFIG,
    width: { step: opts.bar ?? 40 },
    height: 220,
    layer: [
      {
        data: { values },
        mark: { type: 'bar', color: '#4c78a8' },
        encoding: {
          x: { field: 'lang', type: 'nominal', sort: r.languages, title: 'query language', axis: { labelAngle: 0 } },
          // a fixed [0, 1] axis when there is nothing to show (else vega draws a degenerate [0, 0] axis)
          y: { field: 'rankDistance', type: 'quantitative', title: 'rank distance', ...(values.every((v) => v.rankDistance === 0) ? { scale: { domain: [0, 1] } } : {}) },
        },
      },
      {
        data: { values: Number.isNaN(avg) ? [] : [{ avg }] },
        mark: { type: 'rule', color: '#e45756', strokeDash: [5, 3], strokeWidth: 1.5 },
        encoding: { y: { field: 'avg', type: 'quantitative' } },
      },
      {
        data: { values },
        mark: { type: 'text', dy: -6, fontSize: 10 },
        encoding: {
          x: { field: 'lang', type: 'nominal', sort: r.languages },
          y: { field: 'rankDistance', type: 'quantitative' },
          text: { field: 'label', type: 'nominal' },
        },
      },
    ],
  } as TopLevelSpec;
}

/** Renders a Vega-Lite spec to an SVG string (no browser, no network: the specs here carry their data inline). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export class FontError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FontError';
  }
}

export interface FontChoice {
  files: string[];
  dirs: string[];
  /** Family name when known (for resvg's default and sans-serif family), else undefined. */
  family?: string;
  /** Where the choice came from, for messages. */
  source: string;
}

const KNOWN_FONTS: { family: string; files: string[] }[] = [
  // Debian / Ubuntu: fonts-dejavu-core
  { family: 'DejaVu Sans', files: ['/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', '/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf'] },
  // Fedora / RHEL: dejavu-sans-fonts
  { family: 'DejaVu Sans', files: ['/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf', '/usr/share/fonts/dejavu-sans-fonts/DejaVuSans-Bold.ttf'] },
  // Arch: ttf-dejavu
  { family: 'DejaVu Sans', files: ['/usr/share/fonts/TTF/DejaVuSans.ttf', '/usr/share/fonts/TTF/DejaVuSans-Bold.ttf'] },
  // Debian: fonts-liberation / fonts-liberation2
  { family: 'Liberation Sans', files: ['/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf', '/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf'] },
  { family: 'Liberation Sans', files: ['/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf', '/usr/share/fonts/truetype/liberation2/LiberationSans-Bold.ttf'] },
  // Debian: fonts-noto-core
  { family: 'Noto Sans', files: ['/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf', '/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf'] },
  // macOS, Windows
  { family: 'Arial', files: ['/System/Library/Fonts/Supplemental/Arial.ttf', '/System/Library/Fonts/Supplemental/Arial Bold.ttf'] },
  { family: 'Helvetica', files: ['/System/Library/Fonts/Helvetica.ttc'] },
  { family: 'Arial', files: ['C:\\Windows\\Fonts\\arial.ttf', 'C:\\Windows\\Fonts\\arialbd.ttf'] },
];

function fontDirs(): string[] {
  const dirs = ['/usr/share/fonts', '/usr/local/share/fonts', join(homedir(), '.local/share/fonts'), join(homedir(), '.fonts'), '/System/Library/Fonts', '/Library/Fonts', 'C:\\Windows\\Fonts'];
  return dirs.filter((d) => {
    try {
      return statSync(d).isDirectory();
    } catch {
      return false;
    }
  });
}

function hasFontFile(dir: string, depth = 4): boolean {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return false;
  }
  for (const e of entries) {
    if (e.isFile() && /\.(ttf|otf|ttc)$/i.test(e.name)) return true;
    if (e.isDirectory() && depth > 0 && hasFontFile(join(dir, e.name), depth - 1)) return true;
  }
  return false;
}

export const NO_FONT_HINT =
  'no font file found for the PNG pictures (resvg renders no text without one). On Debian/Ubuntu: apt-get install fonts-dejavu-core ' +
  '(installs /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf), or set XLIR_FONT_FILES=/path/to/font.ttf. The SVG pictures do not need it.';

/** The fonts resvg gets (see the header comment); null when there is none. */
export function findFonts(env: NodeJS.ProcessEnv = process.env): FontChoice | null {
  const fromEnv = env.XLIR_FONT_FILES?.split(':').filter(Boolean);
  if (fromEnv && fromEnv.length) {
    const missing = fromEnv.filter((f) => !existsSync(f));
    if (missing.length) throw new FontError(`XLIR_FONT_FILES names font files that do not exist: ${missing.join(', ')}`);
    return { files: fromEnv, dirs: [], source: 'XLIR_FONT_FILES' };
  }
  for (const k of KNOWN_FONTS) {
    if (existsSync(k.files[0])) return { files: k.files.filter((f) => existsSync(f)), dirs: [], family: k.family, source: k.files[0] };
  }
  const dirs = fontDirs().filter((d) => hasFontFile(d));
  if (dirs.length) return { files: [], dirs, source: dirs.join(', ') };
  return null;
}

export interface Png {
  png: Buffer;
  width: number;
  height: number;
  /** RGBA, row-major, width * height * 4 bytes. */
  pixels: Buffer;
  fonts: FontChoice;
}

type ResvgModule = typeof import('@resvg/resvg-js');
let resvgModule: Promise<ResvgModule> | undefined;

/** Loads resvg on first use, so that a missing native binary only disables the PNGs. */
async function loadResvg(): Promise<ResvgModule> {
  resvgModule ??= import('@resvg/resvg-js').catch((e: unknown) => {
    resvgModule = undefined;
    throw new Error(
      `cannot load @resvg/resvg-js (its prebuilt binary comes as an optional dependency for ${process.platform}-${process.arch}; ` +
        `run npm install without --omit=optional): ${e instanceof Error ? e.message : String(e)}`,
    );
  });
  return resvgModule;
}

/** Rasterizes an SVG to PNG at `scale` (default 2: 2 device pixels per SVG pixel) on a white background. */
export async function svgToPng(svg: string, opts: { scale?: number; fonts?: FontChoice | null } = {}): Promise<Png> {
  const fonts = opts.fonts === undefined ? findFonts() : opts.fonts;
  if (!fonts) throw new FontError(NO_FONT_HINT);
  const { Resvg } = await loadResvg();
  const resvg = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: opts.scale ?? 2 },
    background: 'white',
    font: {
      loadSystemFonts: false,
      fontFiles: fonts.files,
      fontDirs: fonts.dirs,
      ...(fonts.family ? { defaultFontFamily: fonts.family, sansSerifFamily: fonts.family } : {}),
    },
    logLevel: 'off',
  });
  const img = resvg.render();
  return { png: img.asPng(), width: img.width, height: img.height, pixels: img.pixels, fonts };
}

/** The SVG's declared width and height (vega writes them as plain numbers). */
export function svgSize(svg: string): { width: number; height: number } {
  const m = /<svg\b[^>]*?\bwidth="([\d.]+)"[^>]*?\bheight="([\d.]+)"/.exec(svg);
  if (!m) throw new Error('SVG without numeric width and height');
  return { width: Number(m[1]), height: Number(m[2]) };
}
