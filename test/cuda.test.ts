// Runs the GPU op checks (native/tests/cuda_tests.cu: every CUDA kernel against the CPU engine,
// forward and gradients) and turns each of its lines into a subtest. Skips, saying why, when the
// CUDA back end was not built (no nvcc or no cuBLAS at build time) or when no usable GPU is present.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const exe = fileURLToPath(new URL('../build/xlir_cuda_tests', import.meta.url));

function buildReason(): string {
  try {
    const addon = createRequire(import.meta.url)('../build/Release/xlir.node') as { info(): { cudaReason?: string } };
    return addon.info().cudaReason ?? 'unknown reason';
  } catch (e) {
    return `the addon does not load: ${(e as Error).message}`;
  }
}

const notBuilt = existsSync(exe) ? false : `CUDA back end not built, build/xlir_cuda_tests is absent (${buildReason()})`;
if (notBuilt) console.log(`cuda.test.ts: SKIP: ${notBuilt}`);

test('CUDA kernels against the CPU engine', { skip: notBuilt }, async (t) => {
  const r = spawnSync(exe, { encoding: 'utf8', timeout: 600_000 });
  assert.equal(r.error, undefined, String(r.error));
  const skip = /^SKIP: (.*)$/m.exec(r.stdout);
  if (skip && r.status === 0) {
    console.log(`cuda.test.ts: SKIP: ${skip[1]}`);
    t.skip(skip[1]);
    return;
  }
  const lines = r.stdout.split('\n').filter((l) => /^(ok|not ok) /.test(l));
  assert.ok(lines.length >= 80, `expected the CUDA checks to report, got:\n${r.stdout}\n${r.stderr}`);
  for (const line of lines) {
    await t.test(line.replace(/^(not )?ok /, ''), () => {
      assert.ok(line.startsWith('ok '), line);
    });
  }
  assert.equal(r.status, 0, `xlir_cuda_tests exited with ${r.status}:\n${r.stdout.slice(-4000)}\n${r.stderr}`);
});
