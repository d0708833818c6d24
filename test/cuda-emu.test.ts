// Runs the CUDA code under CPU emulation (native/tests/cuda_emu/README.md): the kernels' source and
// the CUDA model path (native/cuda/model.cu), compiled as C++ against mock CUDA headers, with
// threads as fibers and cuBLASLt as plain loops. Two programs, each line "ok ..." / "not ok ..." a
// subtest: build/xlir_cuda_emu_tests (native/tests/cuda_tests.cu: every kernel against the CPU)
// and build/xlir_cuda_emu_device_tests (native/tests/device_tests.cc: cuda:0 against the CPU
// Model). They check the kernels' logic (indexing, masks, reductions, barriers, the cuBLASLt
// mapping) on machines without a GPU; they say nothing about timing, races that fibers hide, or
// the real WMMA and cuBLASLt implementations (test/cuda.test.ts runs the same checks on a GPU).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const programs = [
  { name: 'xlir_cuda_emu_tests', what: 'CUDA kernels (emulated on the CPU) against the CPU engine', min: 150 },
  { name: 'xlir_cuda_emu_device_tests', what: 'CUDA model path (emulated on the CPU) against the CPU Model', min: 40 },
];

for (const p of programs) {
  const exe = fileURLToPath(new URL(`../build/${p.name}`, import.meta.url));
  test(p.what, { timeout: 900_000 }, async (t) => {
    assert.ok(existsSync(exe), `${exe} is missing: build with \`npm run build\``);
    // ~20 s and ~80 s on a 2-core machine.
    const r = spawnSync(exe, { encoding: 'utf8', timeout: 600_000, maxBuffer: 64 << 20 });
    assert.equal(r.error, undefined, String(r.error));
    assert.ok(r.stdout.startsWith('# EMULATED CUDA'), `${p.name} does not say it is emulated:\n${r.stdout.slice(0, 500)}`);
    for (const l of r.stdout.split('\n').filter((l) => l.startsWith('# EMULATOR'))) console.log(`cuda-emu.test.ts: ${l}`);
    const lines = r.stdout.split('\n').filter((l) => /^(ok|not ok) /.test(l));
    assert.ok(lines.length >= p.min, `expected ${p.name} to report, got:\n${r.stdout}\n${r.stderr}`);
    for (const line of lines) {
      await t.test(line.replace(/^(not )?ok /, ''), () => {
        assert.ok(line.startsWith('ok '), line);
      });
    }
    assert.equal(r.status, 0, `${p.name} exited with ${r.status}:\n${r.stdout.slice(-4000)}\n${r.stderr}`);
  });
}
