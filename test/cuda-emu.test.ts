// Runs the CUDA code under CPU emulation (native/tests/cuda_emu/README.md): the kernels' source and
// the CUDA model path (native/cuda/model.cu), compiled as C++ against mock CUDA headers, with
// threads as fibers and cuBLASLt as plain loops. Two programs, each line "ok ..." / "not ok ..." a
// subtest: build/xlir_cuda_emu_tests (native/tests/cuda_tests.cu: every kernel against the CPU)
// and build/xlir_cuda_emu_device_tests (native/tests/device_tests.cc: cuda:0 against the CPU
// Model). They check the kernels' logic (indexing, masks, reductions, barriers, the cuBLASLt
// mapping) on machines without a GPU; they say nothing about timing, the GPU's memory model, or
// the real WMMA and cuBLASLt implementations (test/cuda.test.ts runs the same checks on a GPU).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The kernels run four times: threads in index order between barriers, in reverse order, and with
// each warp running ahead to its next __syncthreads (warp 0 first, then the last warp first), so
// that a missing barrier between one thread's write and another's read shows whichever way round
// it is, including between warps that the first two orders keep in step (README of cuda_emu).
// A fifth run is the race detector: the kernels built with ThreadSanitizer (build/tsan, built by
// scripts/setup.sh), where only __syncthreads and __syncwarp order the threads of a block, so any
// unordered pair of accesses is reported whether or not it changes a result; two workers, so that
// blocks also run side by side. The search group is left out there: its thousands of blocks full
// of __syncthreads take ~4.5 min under ThreadSanitizer (native/tests/cuda_emu/README.md).
const programs = [
  { name: 'xlir_cuda_emu_tests', order: 'forward', what: 'CUDA kernels (emulated on the CPU) against the CPU engine', min: 150 },
  { name: 'xlir_cuda_emu_tests', order: 'reverse', what: 'CUDA kernels (emulated, threads in reverse order) against the CPU engine', min: 150 },
  { name: 'xlir_cuda_emu_tests', order: 'warps', what: 'CUDA kernels (emulated, each warp ahead to its next __syncthreads) against the CPU engine', min: 150 },
  { name: 'xlir_cuda_emu_tests', order: 'warps-reverse', what: 'CUDA kernels (emulated, the last warp ahead first) against the CPU engine', min: 150 },
  {
    name: 'tsan/xlir_cuda_emu_tests', order: 'forward', min: 150,
    what: 'CUDA kernels (emulated) under ThreadSanitizer: no data race between CUDA threads',
    env: { XLIR_CUDA_EMU_THREADS: '2', XLIR_CUDA_TESTS_SKIP: 'search' }, build: '`bash scripts/setup.sh` (build/tsan)',
  },
  { name: 'xlir_cuda_emu_device_tests', order: 'forward', what: 'CUDA model path (emulated on the CPU) against the CPU Model', min: 40 },
];

for (const p of programs) {
  const exe = fileURLToPath(new URL(`../build/${p.name}`, import.meta.url));
  test(p.what, { timeout: 900_000 }, async (t) => {
    assert.ok(existsSync(exe), `${exe} is missing: build with ${p.build ?? '`npm run build`'}`);
    // ~20 s (kernels), ~80 s (model) and ~2.5 min (kernels under ThreadSanitizer) on 2 cores.
    const env = { ...process.env, XLIR_CUDA_EMU_ORDER: p.order, ...p.env };
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

// launch.py (native/tests/cuda_emu) refuses a kernel without __launch_bounds__ and registers the
// bound of every other one, so that the emulator refuses a block the GPU would refuse. Every .cu
// in native/ goes through it here, native/tests/cuda_bench.cu included (it is not emulated).
test('every CUDA kernel declares __launch_bounds__, and launch.py registers it', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const launch = join(root, 'native/tests/cuda_emu/launch.py');
  const dir = mkdtempSync(join(tmpdir(), 'xlir-launch-'));
  try {
    const sources = ['native/cuda', 'native/tests']
      .flatMap((d) => readdirSync(join(root, d)).filter((f) => f.endsWith('.cu')).map((f) => join(root, d, f)));
    assert.ok(sources.length >= 12, `found only ${sources.length} .cu files`);
    for (const src of sources) {
      const r = spawnSync('python3', [launch, src, join(dir, 'out.cc')], { encoding: 'utf8' });
      assert.equal(r.status, 0, `launch.py ${src}: ${r.stderr}`);
      const kernels = (readFileSync(src, 'utf8').match(/^\s*__global__\s/gm) ?? []).length;
      const registered = (readFileSync(join(dir, 'out.cc'), 'utf8').match(/::emu::register_bound\(/g) ?? []).length;
      assert.equal(registered, kernels, `${src}: ${kernels} kernels, ${registered} bounds registered`);
    }

    const probe = join(dir, 'probe.cu');
    writeFileSync(probe, [
      'const int kT = 128;',
      'template <int D>',
      '__global__ void __launch_bounds__(kT * 2, 1)',
      '    wide_kernel(float* x) { x[threadIdx.x] = D; }',
      '__global__ void bare_kernel(float* x) { x[0] = 1; }',
      '',
    ].join('\n'));
    const r = spawnSync('python3', [launch, probe, join(dir, 'probe.cc')], { encoding: 'utf8' });
    assert.notEqual(r.status, 0, 'a kernel without __launch_bounds__ must be refused');
    assert.match(r.stderr, /probe\.cu:5: kernel bare_kernel has no __launch_bounds__/);

    const bounded = readFileSync(probe, 'utf8').replace('void bare_kernel', 'void __launch_bounds__(32) bare_kernel');
    writeFileSync(probe, bounded);
    const ok = spawnSync('python3', [launch, probe, join(dir, 'probe.cc')], { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);
    const lines = readFileSync(join(dir, 'probe.cc'), 'utf8').split('\n');
    // line 1 is the #line directive; the registration shares the kernel's first line (the template
    // header), so the .cu line numbers stay right
    assert.match(lines[2], /^\[\[maybe_unused\]\] static const bool \w+ = /);
    assert.match(lines[2], /::emu::register_bound\("wide_kernel", \(long long\)\(kT \* 2\)\); template <int D>$/);
    assert.match(lines[5], /register_bound\("bare_kernel", \(long long\)\(32\)\); __global__ void __launch_bounds__\(32\) bare/);
    assert.equal(lines.length, 7);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// The TypeScript side's CUDA paths, on the emulated CUDA back end: build/Release/xlir_emu.node is
// the addon built against the emulator (CMakeLists.txt), loaded through XLIR_ADDON in a child
// process. Every test below that names cuda:0 must run (not skip) and pass: Model.toDevice('cuda:0')
// and its checks against the CPU, GPU search and InfoNCE, EngineExactSearch on the GPU, `xlir train
// --device cuda:0` (the trainer's GPU InfoNCE), `xlir encode --device cuda:0`, the TREC evaluation
// with encoding and exact search on cuda:0. Not a GPU run.
const emuAddon = fileURLToPath(new URL('../build/Release/xlir_emu.node', import.meta.url));
const tsFiles: { file: string; min: number }[] = [
  { file: 'device.test.ts', min: 11 },
  { file: 'train-command.test.ts', min: 1 },
  { file: 'encode-cli.test.ts', min: 1 },
  { file: 'eval-run.test.ts', min: 1 },
];
for (const { file, min } of tsFiles) {
  test(`${file} on the emulated CUDA addon: every cuda:0 test runs and passes`, { timeout: 600_000 }, async (t) => {
    assert.ok(existsSync(emuAddon), `${emuAddon} is missing: build with \`npm run build\``);
    const path = fileURLToPath(new URL(file, import.meta.url));
    // NODE_TEST_CONTEXT (set by this runner) would make the child report to it instead of in TAP
    const env: NodeJS.ProcessEnv = { ...process.env, XLIR_ADDON: emuAddon };
    delete env.NODE_TEST_CONTEXT;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', path], {
      encoding: 'utf8', timeout: 540_000, maxBuffer: 64 << 20, env,
    });
    assert.equal(r.error, undefined, String(r.error));
    const results = r.stdout.split('\n').map((l) => /^\s*(not )?ok \d+ - (.*)$/.exec(l)).filter((m) => m !== null);
    const cuda = results.filter((m) => m![2].includes('cuda:0'));
    assert.ok(cuda.length >= min, `expected at least ${min} cuda:0 tests in ${file}, found ${cuda.length}:\n${r.stdout.slice(-3000)}`);
    for (const m of cuda) {
      await t.test(m![2], () => {
        assert.ok(!m![1], `failed on the emulated CUDA addon (see ${file})`);
        assert.ok(!/# SKIP/.test(m![2]), 'skipped: the emulated addon should make CUDA available');
      });
    }
    assert.equal(r.status, 0, `${file} on the emulated addon exited with ${r.status}:\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`);
  });
}
