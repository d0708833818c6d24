// `xlir experiment`: the paired bootstrap on hand-made data, config checks, and the shipped
// experiments/quick.yaml end to end (with fewer steps): an interrupted run (a cell limit, then a
// Ctrl-C inside a cell's training) resumes without redoing finished cells, and the report parses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkExperimentConfig, expandCells, expandEnv, readExperimentConfig, selectCells, ConfigError } from '../src/experiment/config.ts';
import { pairedBootstrap, spread } from '../src/experiment/stats.ts';
import { corpusVocab } from '../src/experiment/vocab.ts';
import { tatoebaEvalSet } from '../src/experiment/data.ts';
import { languageGroups, runExperiment } from '../src/experiment/runner.ts';
import type { ExperimentSummary } from '../src/experiment/report.ts';
import { mulberry32 } from '../src/rng.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SHARED = join(ROOT, '..', 'shared');

test('paired bootstrap: identical systems give p = 1, a clear difference a small p, the same seed the same numbers', () => {
  const r = mulberry32(1);
  const n = 400;
  const a = Array.from({ length: n }, () => r());
  const zero = a.map(() => 0);
  const [same] = pairedBootstrap([zero], { resamples: 2000, seed: 3 });
  assert.equal(same.diff, 0);
  assert.equal(same.p, 1);
  assert.deepEqual([same.lo, same.hi], [0, 0]);

  // B = A + 0.05 + noise (sd ~0.29 / sqrt(400) = 0.015 on the mean): p at its floor 1/(B+1).
  const clear = a.map(() => 0.05 + (r() - 0.5));
  const noise = a.map(() => r() - 0.5);
  const res = pairedBootstrap([clear, noise], { resamples: 2000, seed: 3 });
  assert.ok(Math.abs(res[0].diff - 0.05) < 0.04, `diff ${res[0].diff}`);
  assert.ok(res[0].p < 0.01, `clear difference: p ${res[0].p}`);
  assert.ok(res[0].lo > 0 && res[0].hi > res[0].lo, `interval [${res[0].lo}, ${res[0].hi}] should exclude 0`);
  assert.ok(res[1].p > 0.05 || Math.abs(res[1].diff) > 0.02, `pure noise: p ${res[1].p}, diff ${res[1].diff}`);
  assert.ok(res[1].lo < res[1].diff && res[1].diff < res[1].hi);

  const again = pairedBootstrap([clear, noise], { resamples: 2000, seed: 3 });
  assert.deepEqual(again, res, 'seeded: reproducible');
  const other = pairedBootstrap([clear, noise], { resamples: 2000, seed: 4 });
  assert.notDeepEqual(other[1], res[1], 'another seed resamples differently');
  assert.ok(Math.abs(other[1].p - res[1].p) < 0.1, 'but not very differently');

  // Clusters: 80 groups of 5 copies of one value (translations that move together). Resampling
  // queries as if independent understates the spread; resampling the groups does not.
  const g = Array.from({ length: 80 }, () => r() - 0.45);
  const copies = g.flatMap((x) => [x, x, x, x, x]);
  const clusters = g.flatMap((_, i) => [i, i, i, i, i]);
  const [naive] = pairedBootstrap([copies], { resamples: 2000, seed: 5 });
  const [clustered] = pairedBootstrap([copies], { resamples: 2000, seed: 5, clusters });
  assert.equal(clustered.units, 80);
  assert.ok(Math.abs(clustered.diff - naive.diff) < 1e-12, 'same observed difference');
  const width = (x: typeof naive) => x.hi - x.lo;
  assert.ok(width(clustered) > 1.8 * width(naive), `clustered interval ${width(clustered)} vs naive ${width(naive)} (expected ~sqrt(5) wider)`);
  assert.ok(clustered.p >= naive.p);
  assert.equal(pairedBootstrap([zero], { resamples: 500, seed: 1, clusters: zero.map((_, i) => i % 7) })[0].p, 1);

  assert.throws(() => pairedBootstrap([[1, 2], [1]], { resamples: 10, seed: 0 }), /different numbers of queries/);
  const s = spread([0.5, 0.7, NaN, 0.6]);
  assert.equal(s.n, 3);
  assert.ok(Math.abs(s.mean - 0.6) < 1e-12 && Math.abs(s.sd - 0.1) < 1e-12);
  assert.deepEqual([s.min, s.max], [0.5, 0.7]);
  assert.equal(spread([0.3]).sd, 0);
});

test('experiment config: defaults, env expansion, errors naming the field, cell selection', () => {
  const base = {
    scratch: 'tiny', tokenizer: { corpus: true }, data: { demo: {} }, variants: [{ name: 'mono', options: { batching: 'mono' } }, { name: 'hybrid' }],
    seeds: [0, 1], eval: { demo: {} },
  };
  const c = checkExperimentConfig(base, { defaultName: 'x' });
  assert.equal(c.name, 'x');
  assert.equal(c.reference, true);
  assert.equal(c.significance.resamples, 10000);
  assert.deepEqual(expandCells(c).map((x) => x.id), ['mono-s0', 'hybrid-s0', 'mono-s1', 'hybrid-s1']);
  assert.deepEqual(selectCells(expandCells(c), ['hybrid']).map((x) => x.id), ['hybrid-s0', 'hybrid-s1']);
  assert.deepEqual(selectCells(expandCells(c), ['s1']).map((x) => x.id), ['mono-s1', 'hybrid-s1']);
  assert.deepEqual(selectCells(expandCells(c), ['*-s0']).map((x) => x.id), ['mono-s0', 'hybrid-s0']);
  assert.throws(() => selectCells(expandCells(c), ['nope']), /"nope" match no cell/);

  assert.equal(expandEnv('${A:-d}/x', {}), 'd/x');
  assert.equal(expandEnv('${A:-d}/x', { A: '/a' }), '/a/x');
  assert.throws(() => expandEnv('${A}/x', {}), /A is not set/);

  const bad = (patch: Record<string, unknown>, re: RegExp) => assert.throws(() => checkExperimentConfig({ ...base, ...patch }), (e: Error) => e instanceof ConfigError && re.test(e.message));
  bad({ colour: 1 }, /colour: unknown field/);
  bad({ model: '/m' }, /exactly one of model .* or scratch/);
  bad({ variants: [{ name: 'a b' }] }, /variants\[0\]\.name/);
  bad({ variants: [{ name: 'a' }, { name: 'a' }] }, /"a" is used twice/);
  bad({ train: { seed: 3 } }, /train\.seed: set by the experiment \(use the top-level seeds field\)/);
  bad({ train: { 'held-out-languages': ['el'] } }, /heldOutLanguages/);
  bad({ heldOutLanguages: ['xx-YY'] }, /heldOutLanguages\[0\]: unknown language/);
  bad({ eval: { tydiqa: { dir: '/t', languages: [] } } }, /eval\.tydiqa\.languages: no language/);
  bad({ eval: { lareqa: {} } }, /eval\.lareqa: give dir, or train on data\.lareqa/);
  bad({ significance: { pairs: [['mono', 'other']] } }, /no variant named "other"/);

  // Language groups of an evaluation set: seen / zero-shot (held-out when it differs) / low / high.
  const train = ['ar', 'de', 'en', 'es', 'hi', 'ru', 'th', 'tr', 'zh'];
  assert.deepEqual(languageGroups(['sw', 'te', 'bn', 'hi', 'el', 'vi'], train, ['sw', 'te', 'bn'], ['el', 'vi']), {
    seen: ['hi'], 'zero-shot': ['sw', 'te', 'bn', 'el', 'vi'], 'held-out': ['el', 'vi'], 'low-resource': ['sw', 'te', 'bn'], 'high-resource': ['hi', 'el', 'vi'],
  });
  assert.deepEqual(languageGroups(['en', 'el', 'vi'], train, [], ['ell', 'vi']), { seen: ['en'], 'zero-shot': ['el', 'vi'] });
  assert.deepEqual(languageGroups(['en', 'de'], train, []), {});

  // The shipped full-scale config parses (paths need not exist for that).
  const z = readExperimentConfig(join(ROOT, 'experiments', 'xquad-r-zero-shot.yaml'), { XLIR_SHARED: SHARED });
  assert.ok(z.seeds.length >= 3);
  assert.deepEqual(z.heldOutLanguages, ['el', 'vi']);
  for (const v of ['X-X-mono', 'X-Y', 'hybrid', 'hybrid+align']) assert.ok(z.variants.some((x) => x.name === v), `variant ${v}`);
  assert.ok('lareqa' in z.data && z.data.lareqa.testFraction === 0.5 && z.data.lareqa.splitSeed === 0);
  assert.ok(z.eval.lareqa && z.eval.tydiqa && z.eval.tatoeba);
  if (!existsSync(SHARED)) console.log(`# note: ${SHARED} is missing; xquad-r-zero-shot.yaml was only parsed, not run (it is not run here anyway)`);

  // `languages: all`: every TyDi QA dev file / Tatoeba pair in the folder; none there is an error naming it.
  const data = join(SHARED, 'data');
  if (existsSync(join(data, 'tatoeba-laser'))) {
    const all = checkExperimentConfig({ ...base, eval: { tatoeba: { dir: join(data, 'tatoeba-laser'), languages: 'all' }, tydiqa: { dir: join(data, 'tydiqa-goldp'), languages: 'all' } } });
    assert.equal(all.eval.tatoeba!.languages.length, 112);
    assert.ok(all.eval.tatoeba!.languages.includes('swh') && !all.eval.tatoeba!.languages.includes('eng'));
    assert.deepEqual(all.eval.tydiqa!.languages, ['ar', 'bn', 'en', 'fi', 'id', 'ko', 'ru', 'sw', 'te']);
    // A language named by another code finds the folder's pair: sw -> swh, el -> ell.
    assert.deepEqual(tatoebaEvalSet(join(data, 'tatoeba-laser'), ['sw', 'el']).pairs.map((p) => [p.code, p.lang]), [['swh', 'sw'], ['ell', 'el']]);
    assert.throws(() => tatoebaEvalSet(join(data, 'tatoeba-laser'), ['yo']), /Tatoeba: no pair for yo in .* \(it has 112: afr amh/);
  }
  assert.throws(() => checkExperimentConfig({ ...base, eval: { tatoeba: { dir: '/nonexistent', languages: 'all' } } }), /eval\.tatoeba\.languages: no tatoeba\.xxx-eng\.\* pairs in \/nonexistent/);
});

test('corpus vocabulary: special tokens, characters as word starts and ## pieces, words by frequency', () => {
  const v = corpusVocab(['Der Nil, der Nil!', 'нил'], { lowercase: true });
  assert.deepEqual(v.slice(0, 5), ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
  for (const t of ['d', '##d', 'н', '##н', ',', 'der', 'nil', 'нил']) assert.ok(v.includes(t), t);
  assert.ok(v.indexOf('der') < v.indexOf('нил'), 'more frequent words first');
  assert.ok(!v.includes('Der'), 'lowercased');
});

test('quick experiment: cell limit and a Ctrl-C mid-training, then resume without redoing finished cells; the report parses', async () => {
  const out = mkdtempSync(join(tmpdir(), 'xlir-exp-'));
  const c = readExperimentConfig(join(ROOT, 'experiments', 'quick.yaml'));
  assert.equal(c.variants.length, 2);
  assert.equal(c.seeds.length, 2);
  c.train.steps = 40;  // the shipped file trains longer; the behaviour under test does not depend on it
  c.train['cache-dir'] = join(out, 'token-cache');
  c.significance.resamples = 2000;
  // hybrid also learns its temperature: the interrupted and resumed cell below is one that does.
  Object.assign(c.variants[1].options, { 'learn-temperature': true, 'temperature-lr': 1e-2 });
  const lines: string[] = [];
  const log = (s: string) => lines.push(s);

  // Run 1: one cell, then stop (cell limit).
  const r1 = await runExperiment(c, { out, maxCells: 1, log, detailLog: log, png: false });
  assert.deepEqual(r1.ran, ['X-X-mono-s0']);
  assert.deepEqual(r1.pending, ['hybrid-s0', 'X-X-mono-s1', 'hybrid-s1']);
  assert.ok(existsSync(join(out, 'report.md')), 'a partial report is written');
  assert.equal(r1.summary.complete, false);
  const first = join(out, 'cells', 'X-X-mono-s0');
  const mtimes = ['results.json', 'model/model.safetensors', 'run.json', 'log.jsonl'].map((f) => statSync(join(first, f)).mtimeMs);

  // Run 2: Ctrl-C during the next cell's training (trainLoop's own SIGINT handler is called).
  lines.length = 0;
  let fired = false;
  const r2 = await runExperiment(c, {
    out, log, png: false,
    detailLog: (s) => {
      lines.push(s);
      if (!fired && s.startsWith('training:')) {
        fired = true;
        setTimeout(() => {
          const h = process.listeners('SIGINT');
          (h[h.length - 1] as (sig: string) => void)('SIGINT');
        }, 0);
      }
    },
  });
  assert.ok(r2.interrupted, 'the run stops at the interrupt');
  assert.deepEqual(r2.skipped, ['X-X-mono-s0']);
  assert.ok(lines.some((l) => /cell X-X-mono-s0: finished earlier .* skipped/.test(l)), lines.join('\n'));
  assert.ok(existsSync(join(out, 'cells', 'hybrid-s0', 'checkpoint')), 'the interrupted cell has a checkpoint');
  assert.ok(!existsSync(join(out, 'cells', 'hybrid-s0', 'results.json')));

  // Run 3: resumes the half-trained cell through runTrain's checkpoint and finishes the rest.
  lines.length = 0;
  const r3 = await runExperiment(c, { out, log, detailLog: log, png: false });
  assert.equal(r3.interrupted, false);
  assert.deepEqual(r3.skipped, ['X-X-mono-s0']);
  assert.deepEqual(r3.ran, ['hybrid-s0', 'X-X-mono-s1', 'hybrid-s1']);
  assert.ok(lines.some((l) => /cell hybrid-s0: resuming its run/.test(l)), 'resumed');
  assert.ok(lines.some((l) => /resuming from .*checkpoint at step [1-9]/.test(l)), 'from runTrain\'s checkpoint');
  assert.deepEqual(['results.json', 'model/model.safetensors', 'run.json', 'log.jsonl'].map((f) => statSync(join(first, f)).mtimeMs), mtimes,
    'the finished cell was not touched');
  const steps = readFileSync(join(out, 'cells', 'hybrid-s0', 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.type === 'step');
  assert.equal(steps.length, 40, 'the resumed cell trained each step once');

  // The report.
  const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as ExperimentSummary;
  assert.equal(s.kind, 'xlir-experiment');
  assert.equal(s.complete, true);
  assert.equal(s.cells.filter((x) => x.done).length, 4);
  assert.deepEqual(s.heldOutLanguages, ['yo', 'de']);
  const demo = s.evalSets.find((x) => x.name === 'demo')!;
  assert.deepEqual(demo.groups['zero-shot'], ['de', 'yo']);
  assert.deepEqual(demo.groups['low-resource'], ['sw', 'yo', 'te']);
  for (const g of ['all', 'seen', 'zero-shot', 'low-resource', 'high-resource']) {
    const m = s.metrics.demo[g];
    assert.ok(m, `group ${g}`);
    assert.deepEqual(Object.keys(m), ['reference', 'X-X-mono', 'hybrid']);
    assert.equal(m.reference['multi mAP'].n, 1);
    for (const v of ['X-X-mono', 'hybrid']) {
      const x = m[v]['multi mAP'];
      assert.equal(x.n, 2, 'two seeds');
      assert.ok(x.min <= x.mean && x.mean <= x.max && x.sd >= 0);
      assert.ok(m[v]['rank distance'].mean > 0);
    }
  }
  const comp = s.comparisons.filter((x) => x.set === 'demo');
  assert.ok(comp.length >= 4, 'paired tests');
  for (const x of comp) {
    assert.ok(x.p > 0 && x.p <= 1 && x.lo <= x.diff && x.diff <= x.hi, JSON.stringify(x));
    assert.deepEqual(x.seeds, { a: 2, b: 2 });
  }
  assert.ok(comp.some((x) => x.group === 'zero-shot' && x.metric === 'multi AP' && x.a === 'X-X-mono' && x.b === 'hybrid'));
  const md = readFileSync(join(out, 'report.md'), 'utf8');
  assert.match(md, /### All languages\n\n\|  \| mono mAP \| cross mAP \| multi mAP \| mono R@1 \| cross R@1 \| multi R@10 \| rank distance \|/);
  assert.match(md, /\| \*untrained \(reference\)\* \| 0\.\d{3} \|/);
  assert.match(md, /\| \*\*hybrid\*\* \| 0\.\d{3} ± 0\.\d{3} \(0\.\d{3}–0\.\d{3}\) \|/);
  assert.match(md, /### Language groups/);
  assert.match(md, /\| zero-shot \| de yo \|/);
  assert.match(md, /### Paired significance tests/);
  assert.match(md, /\| hybrid − X-X-mono \| all \| multi AP \| [^|]+ \| [^|]+ \| [^|]+ \| [^|]+ \| \d+ \(\d+ groups\) \|/);
  for (const f of ['metrics-demo.svg', 'bias-demo.svg', 'variants/hybrid/demo/heatmap.svg', 'variants/reference/demo/heatmap.svg'])
    assert.ok(existsSync(join(out, f)), f);
  assert.match(md, /!\[[^\]]*\]\(bias-demo\.svg\)/);
  // The learned temperatures, in the cells table: a number for hybrid's cells, a dash for the others.
  assert.match(md, /\| cell \| finished \| steps \| training loss \(last 10 steps\) \| best validation loss \| learned temperature \(end\) \|/);
  assert.match(md, /\| `hybrid-s0` \| yes \| 40 \| [^|]+ \| [^|]+ \| 0\.0\d+ \|/);
  assert.match(md, /\| `X-X-mono-s0` \| yes \| 40 \| [^|]+ \| [^|]+ \| – \|/);
});
