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

// The kernels run twice: threads in index order between barriers, then in reverse order, so that a
// missing barrier between one thread's write and another's read shows whichever way round it is.
const programs = [
  { name: 'xlir_cuda_emu_tests', order: 'forward', what: 'CUDA kernels (emulated on the CPU) against the CPU engine', min: 150 },
  { name: 'xlir_cuda_emu_tests', order: 'reverse', what: 'CUDA kernels (emulated, threads in reverse order) against the CPU engine', min: 150 },
  { name: 'xlir_cuda_emu_device_tests', order: 'forward', what: 'CUDA model path (emulated on the CPU) against the CPU Model', min: 40 },
];

for (const p of programs) {
  const exe = fileURLToPath(new URL(`../build/${p.name}`, import.meta.url));
  test(p.what, { timeout: 900_000 }, async (t) => {
    assert.ok(existsSync(exe), `${exe} is missing: build with \`npm run build\``);
    // ~20 s (kernels) and ~80 s (model) on a 2-core machine.
    const env = { ...process.env, XLIR_CUDA_EMU_ORDER: p.order };
    const r = spawnSync(exe, { encoding: 'utf8', timeout: 600_000, maxBuffer: 64 << 20, env });
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
