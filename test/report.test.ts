// Reports of LAReQA results (src/report): Markdown tables, SVG/PNG pictures, writing a report
// directory, comparison of runs, reading result files. A 4-language result is built by hand; the
// expected numbers below are worked out by hand from its matrix, not with the code under test.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LareqaResult } from '../src/report/types.ts';
import { validateResult } from '../src/report/types.ts';
import { resultTable, fmtPaper } from '../src/report/markdown.ts';
import { findFonts, heatmapSpec, rankDistanceSpec, renderSvg, svgSize, svgToPng, FontError } from '../src/report/charts.ts';
import { writeReport, REPORT_FILES } from '../src/report/write.ts';
import { compareResults, fmtSigned, readResult } from '../src/report/compare.ts';

const LANGS = ['en', 'de', 'el', 'vi'];
// [query][pool]; diagonal sum 0.813 + 0.795 + 0.768 + 0.784 = 3.160 -> mono 0.790
const MAP = [
  [0.813, 0.701, 0.655, 0.643],
  [0.722, 0.795, 0.611, 0.634],
  [0.598, 0.587, 0.768, 0.552],
  [0.621, 0.604, 0.541, 0.784],
];
// off-diagonal sum: en 1.999, de 1.967, el 1.737, vi 1.766 = 7.469 -> cross 7.469 / 12 = 0.62241..
const CROSS_MAP = 7.469 / 12;
const R1 = MAP.map((row, i) => row.map((v, j) => Math.round((v - (i === j ? 0.1 : 0.15)) * 1000) / 1000));
const MULTI = {
  en: { map: 0.611, r10: 0.902, rankDistance: 412.5, queries: 100 },
  de: { map: 0.583, r10: 0.871, rankDistance: 380.2, queries: 100 },
  el: { map: 0.522, r10: 0.804, rankDistance: 455.0, queries: 100 },
  vi: { map: 0.544, r10: 0.833, rankDistance: 430.1, queries: 100 },
};

function summaryOf(map: number[][], r1: number[][], multi: LareqaResult['multilingual'], langs: string[]): LareqaResult['summary'] {
  const n = langs.length;
  let md = 0, rd = 0, mc = 0, rc = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      if (i === j) { md += map[i][j]; rd += r1[i][j]; } else { mc += map[i][j]; rc += r1[i][j]; }
    }
  const avg = (f: (e: LareqaResult['multilingual'][string]) => number) => langs.reduce((s, l) => s + f(multi[l]), 0) / n;
  return {
    mono: { map: md / n, r1: rd / n },
    cross: { map: mc / (n * (n - 1)), r1: rc / (n * (n - 1)) },
    multi: { map: avg((e) => e.map), r10: avg((e) => e.r10) },
    rankDistance: avg((e) => e.rankDistance),
  };
}

function makeResult(p: { map?: number[][]; multi?: LareqaResult['multilingual']; langs?: string[]; bench?: string } = {}): LareqaResult {
  const langs = p.langs ?? LANGS;
  const pick = <T>(m: T[][]) => langs.map((q) => langs.map((pl) => m[LANGS.indexOf(q)][LANGS.indexOf(pl)]));
  const map = p.map ?? pick(MAP);
  const r1 = pick(R1);
  const multi = p.multi ?? Object.fromEntries(langs.map((l) => [l, { ...MULTI[l as keyof typeof MULTI] }]));
  return {
    kind: 'lareqa',
    xlir: '0.1.0',
    bench: p.bench ?? 'xquad-r',
    created: '2025-01-02T03:04:05.000Z',
    seed: 7,
    model: { path: '/models/xlmr-hybrid', name: 'xlmr|hybrid' },
    data: { dir: '/data/xquad-r', files: Object.fromEntries(langs.map((l) => [l, `sha-${l}`])), articles: 'test split 0.5 seed 0' },
    options: { context: true, maxQueryLength: 64 },
    languages: langs,
    summary: summaryOf(map, r1, multi, langs),
    matrix: { map, r1 },
    multilingual: multi,
    counts: { questions: Object.fromEntries(langs.map((l) => [l, 100])), candidates: Object.fromEntries(langs.map((l, i) => [l, 120 + i])) },
    timing: { encodeMs: 1234, searchMs: 56, metricsMs: 78, totalMs: 1400 },
    groups: { 'zero-shot': ['el', 'vi', 'th'], seen: ['en', 'de'] },
  };
}

/** The cells of the table row whose first cell is `first` (exact), or undefined. */
function row(md: string, first: string, after = ''): string[] | undefined {
  const text = after ? md.slice(md.indexOf(after)) : md;
  for (const line of text.split('\n')) {
    if (!line.startsWith('|')) continue;
    const cells = line.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim());
    if (cells[0] === first) return cells;
  }
  return undefined;
}

test('resultTable: summary as in the paper, values at their places', () => {
  const md = resultTable(makeResult());
  const mono = row(md, 'monolingual');
  assert.deepEqual(mono, ['monolingual', '4 languages', '0.790', (3.160 / 4 - 0.1).toFixed(3), '–', '–']);
  const cross = row(md, 'cross-lingual');
  assert.deepEqual(cross?.slice(0, 3), ['cross-lingual', '12 language pairs', '0.622']);
  const multi = row(md, 'multilingual');
  // multi mAP (0.611+0.583+0.522+0.544)/4 = 0.565, R@10 (0.902+0.871+0.804+0.833)/4 = 0.8525 -> 0.853 (or .852 by binary rounding), rank distance 1677.8/4 = 419.45
  assert.equal(multi?.[2], '0.565');
  assert.ok(multi?.[4] === '0.853' || multi?.[4] === '0.852', `R@10 ${multi?.[4]}`);
  assert.ok(multi?.[5] === '419.4' || multi?.[5] === '419.5', `rank distance ${multi?.[5]}`);
  assert.match(md, /\*\*\.790 \/ \.622 \/ \.565\*\*/);
  assert.equal(fmtPaper(0.0123), '.012');
  assert.equal(fmtPaper(-0.5), '-.500');
  // the model name's pipe is escaped and does not break the table
  assert.match(md, /\(xlmr\\\|hybrid\)/);
  assert.doesNotMatch(md, /Warning/);
});

test('resultTable: query x pool matrix, diagonal = monolingual in bold', () => {
  const r = makeResult();
  const md = resultTable(r);
  const header = row(md, 'query \\ pool');
  assert.deepEqual(header, ['query \\ pool', 'en', 'de', 'el', 'vi', 'cross (as query)']);
  LANGS.forEach((q, i) => {
    const cells = row(md, `**${q}**`, '## mAP, query language');
    assert.ok(cells, `matrix row ${q}`);
    LANGS.forEach((_, j) => {
      const want = MAP[i][j].toFixed(3);
      assert.equal(cells![1 + j], i === j ? `**${want}**` : want, `cell ${q}/${LANGS[j]}`);
    });
  });
  // en as query over the other pools: (0.701 + 0.655 + 0.643) / 3 = 0.6663..
  assert.equal(row(md, '**en**', '## mAP, query language')?.[5], '0.666');
  // el as pool under the other queries: (0.655 + 0.611 + 0.541) / 3 = 0.6023..
  assert.equal(row(md, 'cross (as pool)', '## mAP, query language')?.[3], '0.602');
  // the R@1 matrix follows with its own diagonal
  assert.equal(row(md, '**de**', '## R@1')?.[2], `**${(0.795 - 0.1).toFixed(3)}**`);
  // per-language table: mono mAP = the diagonal, multilingual values per language
  const el = row(md, 'el', '## Per language');
  assert.deepEqual(el, ['el', '100', '122', '0.768', '0.668', '0.579', '0.602', '0.522', '0.804', '455.0', '100']);
});

test('resultTable: language groups (mono over the group, cross over pairs with query or pool in it)', () => {
  const md = resultTable(makeResult());
  const z = row(md, 'zero-shot');
  assert.ok(z, 'zero-shot row');
  assert.equal(z![1], 'el vi (not evaluated: th)');
  assert.equal(z![2], '0.776'); // (0.768 + 0.784) / 2
  // pairs with el or vi on either side: all 12 but en->de and de->en: (7.469 - 0.701 - 0.722) / 10 = 0.6046
  assert.equal(z![4], '0.605');
  assert.equal(z![6], '10');
  assert.equal(z![7], '0.533'); // (0.522 + 0.544) / 2
  assert.ok(z![9] === '442.6' || z![9] === '442.5', `rank distance ${z![9]}`); // (455.0 + 430.1) / 2 = 442.55
  const s = row(md, 'seen');
  assert.equal(s![2], '0.804'); // (0.813 + 0.795) / 2
  // seen = en, de: every pair except el->vi and vi->el: (7.469 - 0.552 - 0.541) / 10 = 0.6376
  assert.equal(s![4], '0.638');
  assert.match(md, /query \*\*or\*\* pool language is in the group/);
  const noGroups = { ...makeResult(), groups: undefined };
  assert.doesNotMatch(resultTable(noGroups), /Language groups/);
});

test('resultTable: a summary that disagrees with the matrix is flagged', () => {
  const r = makeResult();
  r.summary.mono.map = 0.5;
  const md = resultTable(r);
  assert.match(md, /Warning:.*summary\.mono\.map is 0\.5 but the diagonal of matrix\.map averages to 0\.79/);
});

test('charts: SVG heatmap and rank-distance bars carry the labels and values', async () => {
  const r = makeResult();
  const heat = await renderSvg(heatmapSpec(r));
  assert.match(heat, /^<svg /);
  const texts = [...heat.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) assert.ok(texts.includes(MAP[i][j].toFixed(3)), `heatmap label ${MAP[i][j]}`);
  for (const l of LANGS) assert.ok(texts.filter((t) => t === l).length >= 2, `language ${l} on both axes`);
  assert.ok(texts.includes('query language') && texts.includes('pool language'), 'axis titles');
  assert.ok(texts.some((t) => t.includes('xquad-r')), 'title names the bench');
  assert.equal((heat.match(/<path[^>]*stroke="black"[^>]*stroke-width="2"/g) ?? []).length, 4, 'four outlined diagonal cells');

  const bars = await renderSvg(rankDistanceSpec(r));
  const btexts = [...bars.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
  for (const [l, e] of Object.entries(MULTI)) {
    assert.ok(btexts.includes(l), `bar axis label ${l}`);
    assert.ok(btexts.includes(e.rankDistance.toFixed(1)), `bar label ${e.rankDistance}`);
  }
  // subtitle (its lines are tspans): the macro-average, 1677.8 / 4 = 419.45
  assert.match(bars, />multilingual pool; lower is better; mean 419\.[45] \(dashed\)</);
  const { width, height } = svgSize(bars);
  assert.ok(width > 150 && width < 1500 && height > 200 && height < 800, `${width} x ${height}`);
});

const fonts = findFonts();

function pngInfo(png: Buffer): { width: number; height: number } {
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.equal(png.toString('latin1', 12, 16), 'IHDR');
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

test('charts: PNG from the SVG, text drawn with the font found', { skip: fonts ? false : 'no font installed (apt-get install fonts-dejavu-core)' }, async () => {
  const heat = await renderSvg(heatmapSpec(makeResult()));
  const size = svgSize(heat);
  const out = await svgToPng(heat, { scale: 2 });
  assert.ok(out.png.length > 2000, `PNG of ${out.png.length} bytes`);
  const info = pngInfo(out.png);
  assert.deepEqual(info, { width: Math.ceil(size.width * 2), height: Math.ceil(size.height * 2) });
  assert.ok(info.width > 300 && info.height > 300 && info.width < 4000 && info.height < 4000, `${info.width} x ${info.height}`);

  // text only: dark pixels with the font, none without any font (so the font is what draws text)
  const textSvg = '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="30"><text x="4" y="22" font-family="sans-serif" font-size="18">0.792 en</text></svg>';
  const dark = (px: Buffer) => { let n = 0; for (let i = 0; i < px.length; i += 4) if (px[i] < 100) n++; return n; };
  const withFont = await svgToPng(textSvg, { scale: 1 });
  assert.ok(dark(withFont.pixels) > 50, `text pixels ${dark(withFont.pixels)} with ${withFont.fonts.source}`);
  const noFont = await svgToPng(textSvg, { scale: 1, fonts: { files: [], dirs: [], source: 'none' } });
  assert.equal(dark(noFont.pixels), 0);
  await assert.rejects(svgToPng(textSvg, { fonts: null }), (e: unknown) => e instanceof FontError && /fonts-dejavu-core/.test(e.message));
});

test('writeReport: all files, atomically, report links the pictures, result.json reads back', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'xlir-report-'));
  try {
    const r = makeResult();
    const paths = await writeReport(r, join(dir, 'run1'));
    const files = (await readdir(join(dir, 'run1'))).sort();
    const want = [REPORT_FILES.json, REPORT_FILES.markdown, REPORT_FILES.heatmapSvg, REPORT_FILES.rankDistanceSvg, ...(fonts ? [REPORT_FILES.heatmapPng, REPORT_FILES.rankDistancePng] : [])].sort();
    assert.deepEqual(files, want, 'exactly the report files, no temporary file left');
    assert.equal(paths.markdown, join(dir, 'run1', 'report.md'));
    const md = await readFile(paths.markdown, 'utf8');
    assert.match(md, /\]\(heatmap\.svg\)/);
    assert.match(md, /\]\(rank-distance\.svg\)/);
    assert.match(md, /\| monolingual \| 4 languages \| 0\.790 \|/);
    if (fonts) {
      assert.match(md, /!\[[^\]]*\]\(heatmap\.png\)/);
      const png = await readFile(paths.heatmapPng!);
      assert.ok(pngInfo(png).width > 300, 'heatmap.png width');
      const rank = await readFile(paths.rankDistancePng!);
      assert.ok(pngInfo(rank).height > 300, 'rank-distance.png height');
    }
    assert.match(await readFile(paths.heatmapSvg, 'utf8'), />0\.768</);
    assert.deepEqual(await readResult(paths.json), r);

    // without PNGs: stale PNGs of the earlier report are removed, the report embeds the SVGs
    const r2 = makeResult();
    r2.matrix.map[2][2] = 0.5;
    r2.summary = summaryOf(r2.matrix.map, r2.matrix.r1, r2.multilingual, LANGS);
    const p2 = await writeReport(r2, join(dir, 'run1'), { png: false });
    assert.equal(p2.heatmapPng, undefined);
    assert.deepEqual((await readdir(join(dir, 'run1'))).filter((f) => f.endsWith('.png')), []);
    assert.match(await readFile(p2.markdown, 'utf8'), /!\[[^\]]*\]\(heatmap\.svg\)/);
    assert.match(await readFile(p2.heatmapSvg, 'utf8'), />0\.500</);

    // a malformed result writes nothing
    const bad = { ...makeResult(), languages: ['en', 'de'] } as LareqaResult;
    await assert.rejects(writeReport(bad, join(dir, 'bad')), /matrix\.map" has 4 rows, expected 2/);
    await assert.rejects(readdir(join(dir, 'bad')), /ENOENT/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('writeReport without a usable font: SVGs only and a note (png: auto), an error (png: true)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'xlir-nofont-'));
  const saved = process.env.XLIR_FONT_FILES;
  process.env.XLIR_FONT_FILES = join(dir, 'no-such-font.ttf');
  try {
    const p = await writeReport(makeResult(), dir);
    assert.equal(p.heatmapPng, undefined);
    assert.equal(p.warnings.length, 1, p.warnings.join('; '));
    assert.match(p.warnings[0], /XLIR_FONT_FILES names font files that do not exist/);
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.png')), []);
    const md = await readFile(p.markdown, 'utf8');
    assert.match(md, /> Note: PNG pictures not written: XLIR_FONT_FILES/);
    assert.match(md, /!\[[^\]]*\]\(rank-distance\.svg\)/);
    await assert.rejects(writeReport(makeResult(), join(dir, 'strict'), { png: true }), (e: unknown) => e instanceof FontError);
  } finally {
    if (saved === undefined) delete process.env.XLIR_FONT_FILES;
    else process.env.XLIR_FONT_FILES = saved;
    await rm(dir, { recursive: true, force: true });
  }
});

test('compareResults: side by side with signed differences to the first run', () => {
  const a = makeResult();
  const map = MAP.map((r, i) => r.map((v, j) => (i === j ? v + 0.012 : j === 1 ? v - 0.016 : v)));
  const multi = Object.fromEntries(LANGS.map((l) => [l, { ...MULTI[l as keyof typeof MULTI], rankDistance: MULTI[l as keyof typeof MULTI].rankDistance - 30.5 }]));
  const b = makeResult({ map, multi });
  const md = compareResults([{ label: 'X-X-mono', result: a }, { label: 'hybrid', result: b }]);
  assert.deepEqual(row(md, 'metric'), ['metric', 'X-X-mono', 'hybrid', 'Δ hybrid']);
  assert.deepEqual(row(md, 'mono mAP'), ['mono mAP', '0.790', '0.802', '+0.012']);
  // three cross cells (query != de, pool de) lose 0.016: 0.048 / 12 = 0.004
  assert.deepEqual(row(md, 'cross mAP'), ['cross mAP', '0.622', '0.618', '-0.004']);
  assert.deepEqual(row(md, 'multi mAP'), ['multi mAP', '0.565', '0.565', '±0.000']);
  assert.equal(row(md, 'rank distance (lower is better)')?.[3], '-30.5');
  // These fixtures hold no per-query values: the paired test says so, and that is the only note.
  assert.match(md, /> Note: no paired test: "X-X-mono", "hybrid" hold no per-query values/);
  assert.doesNotMatch(md.replace(/> Note: no paired test.*/, ''), /Note:/);
  assert.equal(fmtSigned(0.0004, 3), '±0.000');
  assert.equal(fmtSigned(-0.0126, 3), '-0.013');
  assert.equal(fmtSigned(2, 1), '+2.0');

  // three runs: each difference against the first
  const c = makeResult({ map: MAP.map((r, i) => r.map((v, j) => (i === j ? v - 0.02 : v))) });
  const md3 = compareResults([{ label: 'a', result: a }, { label: 'b', result: b }, { label: 'c', result: c }]);
  assert.deepEqual(row(md3, 'mono mAP'), ['mono mAP', '0.790', '0.802', '+0.012', '0.770', '-0.020']);
});

// The paired test on per-query multilingual AP: a constant +0.1 on every shared question is certain
// (every resample gives +0.1: p = 1 / (B + 1)); the same values give Δ 0 and p 1; questions only one
// run holds are left out and counted; and the interval matches stats.ts pairedBootstrap's clustered by question.
test('compareResults: paired bootstrap on per-query multilingual AP, questions and their translations resampled together', async () => {
  const { pairedBootstrap } = await import('../src/experiment/stats.ts');
  const pq = (shift: (i: number) => number, n = 40) => LANGS.flatMap((lang) => Array.from({ length: n }, (_, i) => ({ lang, id: `q${i}`, ap: [0.5], multiAp: 0.3 + 0.01 * i + shift(i), r10: 1, rankDistance: 3 })));
  const withPq = (p: ReturnType<typeof pq>) => ({ ...makeResult(), perQuery: p }) as LareqaResult;
  const a = withPq(pq(() => 0));
  const md = compareResults([{ label: 'a', result: a }, { label: 'b', result: withPq(pq(() => 0.1)) }, { label: 'same', result: withPq(pq(() => 0)) }]);
  assert.match(md, /Paired bootstrap of multilingual AP per query against "a"/);
  const paired = (m: string) => m.slice(m.indexOf('Paired bootstrap'));
  assert.deepEqual(row(paired(md), 'b'), ['b', '+0.1000', '[+0.1000, +0.1000]', '<0.001', String(40 * LANGS.length)]);
  assert.deepEqual(row(paired(md), 'same'), ['same', '±0.0000', '[±0.0000, ±0.0000]', '1.000', String(40 * LANGS.length)]);
  // Noisy differences: Δ, interval and p equal pairedBootstrap's with one cluster per question id.
  const noise = (i: number) => ((i * 7919) % 13) / 100 - 0.05;
  const md2 = compareResults([{ label: 'a', result: a }, { label: 'n', result: withPq(pq(noise, 30)) }]);
  const ids = LANGS.flatMap(() => Array.from({ length: 30 }, (_, i) => i));
  const [ref] = pairedBootstrap([ids.map((i) => noise(i))], { resamples: 10_000, seed: 0, clusters: ids });
  assert.deepEqual(row(paired(md2), 'n'), ['n', fmtSigned(ref.diff, 4), `[${fmtSigned(ref.lo, 4)}, ${fmtSigned(ref.hi, 4)}]`, ref.p < 0.001 ? '<0.001' : ref.p.toFixed(3),
    `${30 * LANGS.length} (${10 * LANGS.length} unpaired left out)`]);
});

test('compareResults: refuses other benches, compares overlapping language sets on the common ones', () => {
  const a = makeResult();
  assert.throws(() => compareResults([{ label: 'a', result: a }, { label: 'm', result: makeResult({ bench: 'mlqa-r' }) }]), /different benches: "a" is xquad-r, "m" is mlqa-r/);
  assert.throws(() => compareResults([]), /no run/);
  assert.throws(() => compareResults([{ label: 'a', result: a }, { label: 'a', result: a }]), /label "a" is given to more than one run/);
  assert.throws(() => compareResults([{ label: 'a', result: a }, { label: 'b', result: { ...a, kind: 'miracl' } as unknown as LareqaResult }]), /run "b": field "kind"/);

  const sub = makeResult({ langs: ['de', 'en', 'el'] });
  const md = compareResults([{ label: 'all', result: a }, { label: 'three', result: sub }]);
  assert.match(md, /3 common languages \(en de el\)/);
  // mono over en de el: (0.813 + 0.795 + 0.768) / 3 = 0.792, the same in both runs
  assert.deepEqual(row(md, 'mono mAP'), ['mono mAP', '0.792', '0.792', '±0.000']);
  // cross over the 6 pairs of en de el: (0.701 + 0.655 + 0.722 + 0.611 + 0.598 + 0.587) / 6 = 0.6457
  assert.deepEqual(row(md, 'cross mAP'), ['cross mAP', '0.646', '0.646', '±0.000']);

  const other = makeResult({ langs: ['en', 'de'] });
  other.languages = ['fr', 'es'];
  other.multilingual = { fr: other.multilingual.en, es: other.multilingual.de };
  other.counts = { questions: { fr: 1, es: 1 }, candidates: { fr: 1, es: 1 } };
  assert.throws(() => compareResults([{ label: 'a', result: a }, { label: 'o', result: other }]), /no language in common/);
});

test('readResult: clear errors naming the file and the field; NaN written as null reads back as NaN', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'xlir-read-'));
  try {
    const f = (n: string) => join(dir, n);
    await assert.rejects(readResult(f('missing.json')), (e: Error) => e.message.includes(f('missing.json')) && /no such file/.test(e.message));
    await writeFile(f('text.json'), 'mAP 0.8\n');
    await assert.rejects(readResult(f('text.json')), (e: Error) => e.message.startsWith(`${f('text.json')}: not JSON`));
    await writeFile(f('empty.json'), '');
    await assert.rejects(readResult(f('empty.json')), /empty\.json: empty file/);
    await writeFile(f('kind.json'), JSON.stringify({ ...makeResult(), kind: 'miracl' }));
    await assert.rejects(readResult(f('kind.json')), (e: Error) => e.message === `${f('kind.json')}: field "kind" is "miracl", expected "lareqa" (only LAReQA results are reported here)`);
    const noMono = makeResult() as unknown as { summary: { mono: Partial<{ map: number }> } };
    delete noMono.summary.mono.map;
    await writeFile(f('field.json'), JSON.stringify(noMono));
    await assert.rejects(readResult(f('field.json')), (e: Error) => e.message === `${f('field.json')}: field "summary.mono.map" is missing`);
    const shortRow = makeResult();
    shortRow.matrix.r1[2] = [0.5, 0.5];
    await writeFile(f('row.json'), JSON.stringify(shortRow));
    await assert.rejects(readResult(f('row.json')), /row\.json: field "matrix\.r1\.2" \(query language el\) has 2 columns, expected 4/);
    const strSeed = { ...makeResult(), seed: '7' };
    await writeFile(f('seed.json'), JSON.stringify(strSeed));
    await assert.rejects(readResult(f('seed.json')), /seed\.json: field "seed" must be a finite number/);
    await writeFile(f('array.json'), '[1, 2]');
    await assert.rejects(readResult(f('array.json')), /array\.json: not a result object/);

    const nan = makeResult();
    nan.matrix.map[0][3] = NaN;
    await writeFile(f('nan.json'), JSON.stringify(nan));
    assert.match(await readFile(f('nan.json'), 'utf8'), /null/);
    const back = await readResult(f('nan.json'));
    assert.ok(Number.isNaN(back.matrix.map[0][3]), `null read back as ${back.matrix.map[0][3]}`);
    assert.equal(back.matrix.map[0][2], 0.655);
    // a missing cell shows as "–" and is left out of the averages
    assert.equal(row(resultTable(back), '**en**', '## mAP, query language')?.[4], '–');
    assert.equal(row(resultTable(back), '**en**', '## mAP, query language')?.[5], '0.678'); // (0.701 + 0.655) / 2
    // validateResult does not change its input
    const input = JSON.parse(JSON.stringify(nan));
    validateResult(input);
    assert.equal(input.matrix.map[0][3], null);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// The chance level printed beside rank distance: (N + 1)(L - 1) / (L + 1) for L answers among N
// candidates, against the mean of max - min over every placement of L answers (small N, exhaustive).
test('randomRankDistance equals the exhaustive mean of max rank - min rank', async () => {
  const { randomRankDistance } = await import('../src/report/markdown.ts');
  const subsets = (n: number, k: number, from = 1): number[][] =>
    k === 0 ? [[]] : Array.from({ length: n - from + 1 }, (_, i) => from + i).flatMap((x) => subsets(n, k - 1, x + 1).map((s) => [x, ...s]));
  for (const [perLang, L] of [[2, 2], [3, 3], [4, 2], [2, 4]]) {
    const langs = Array.from({ length: L }, (_, i) => `l${i}`);
    const n = perLang * L;
    const all = subsets(n, L);
    const mean = all.reduce((s, x) => s + x[x.length - 1] - x[0], 0) / all.length;
    const r = { languages: langs, counts: { candidates: Object.fromEntries(langs.map((l) => [l, perLang])) } } as unknown as Parameters<typeof randomRankDistance>[0];
    assert.ok(Math.abs(randomRankDistance(r) - mean) < 1e-12, `N ${n}, L ${L}: ${randomRankDistance(r)} vs ${mean}`);
  }
});
