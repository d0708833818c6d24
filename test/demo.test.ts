// `xlir demo` end to end (fewer steps than the command's default, to stay near a minute on 2 cores):
// three tiny encoders trained from random initialisation on the built-in set, each clearly better
// than the untrained model on the held-out groups; the printed table and the report's files.
// Needs neither ../shared nor the network.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_P, MIN_GAIN, runDemo } from '../src/demo.ts';

test('xlir demo: X-X-mono, X-Y and hybrid each beat the untrained model on held-out items; report written', async () => {
  const out = mkdtempSync(join(tmpdir(), 'xlir-demo-'));
  const printed: string[] = [];
  const t0 = performance.now();
  const r = await runDemo({ steps: 150, batchSize: 32, lr: 1e-3, seed: 0, out: join(out, 'report'), log: (s) => printed.push(s), detailLog: () => {} });
  const sec = (performance.now() - t0) / 1000;
  console.log(`# demo (150 steps x 3 variants) took ${sec.toFixed(0)} s`);
  console.log(printed.map((l) => `# ${l}`).join('\n'));

  assert.deepEqual(r.rows.map((x) => x.name), ['untrained', 'X-X-mono', 'X-Y', 'hybrid']);
  for (const x of r.rows.slice(1)) {
    assert.ok(x.multi >= r.before + MIN_GAIN, `${x.name}: multilingual mAP ${x.multi} vs untrained ${r.before}`);
    assert.ok(x.p !== undefined && x.p < MAX_P, `${x.name}: paired bootstrap p ${x.p}`);
  }
  assert.ok(r.ok);
  assert.ok(r.after > r.before, 'the contract of src/cli.ts: after (worst trained) > before (untrained)');
  // The paper's robust effect, on this small set too: cross-lingual batches beat monolingual ones cross-lingually.
  const by = Object.fromEntries(r.rows.map((x) => [x.name, x]));
  assert.ok(by['X-Y'].cross > by['X-X-mono'].cross, `X-Y cross ${by['X-Y'].cross} vs X-X-mono ${by['X-X-mono'].cross}`);

  const table = printed.join('\n');
  assert.match(table, /model\s+mono mAP\s+cross mAP\s+multi mAP\s+rank distance/);
  for (const n of ['untrained', 'X-X-mono', 'X-Y', 'hybrid']) assert.match(table, new RegExp(`^${n}\\s+0\\.\\d{3}\\s+0\\.\\d{3}\\s+0\\.\\d{3}\\s+\\d+\\.\\d`, 'm'));
  for (const f of ['report.md', 'summary.json', 'bias-demo.svg', 'metrics-demo.svg', 'variants/hybrid/demo/heatmap.svg', 'variants/reference/demo/heatmap.svg', 'tokenizer/vocab.txt'])
    assert.ok(existsSync(join(out, 'report', f)), f);
  const md = readFileSync(join(out, 'report', 'report.md'), 'utf8');
  assert.match(md, /\| \*untrained \(reference\)\* \|/);
  assert.match(md, /### Paired significance tests/);
  // Checkpoints are dropped once a cell is evaluated (the report folder keeps the models only).
  assert.ok(!existsSync(join(out, 'report', 'cells', 'hybrid-s0', 'checkpoint')));
  assert.ok(existsSync(join(out, 'report', 'cells', 'hybrid-s0', 'model', 'model.safetensors')));
});
