// Runs the C++ op checks (native/tests/op_tests.cc: fast path vs reference path, finite
// differences of every op and of whole tiny models) and turns each of its lines into a subtest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const exe = fileURLToPath(new URL('../build/xlir_native_tests', import.meta.url));

test('native op checks', async (t) => {
  assert.ok(existsSync(exe), `${exe} is missing: build with \`npm run build\``);
  const r = spawnSync(exe, { encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.error, undefined, String(r.error));
  const lines = r.stdout.split('\n').filter((l) => /^(ok|not ok) /.test(l));
  assert.ok(lines.length >= 30, `expected the op checks to report, got:\n${r.stdout}\n${r.stderr}`);
  for (const line of lines) {
    await t.test(line.replace(/^(not )?ok /, ''), () => {
      assert.ok(line.startsWith('ok '), line);
    });
  }
  assert.equal(r.status, 0, `xlir_native_tests exited with ${r.status}:\n${r.stderr}`);
});

// native/tests/device_tests.cc: the Model on the 'emulated' device (and on cuda:0 when a GPU is
// present) against the CPU Model, in C++ (what GPU machines without Node run).
const deviceExe = fileURLToPath(new URL('../build/xlir_device_tests', import.meta.url));

test('device back-end checks (C++)', async (t) => {
  assert.ok(existsSync(deviceExe), `${deviceExe} is missing: build with \`npm run build\``);
  const r = spawnSync(deviceExe, { encoding: 'utf8', timeout: 600_000 });
  assert.equal(r.error, undefined, String(r.error));
  for (const skip of r.stdout.split('\n').filter((l) => l.startsWith('SKIP'))) console.log(`native-ops.test.ts: ${skip}`);
  const lines = r.stdout.split('\n').filter((l) => /^(ok|not ok) /.test(l));
  assert.ok(lines.length >= 16, `expected the device checks to report, got:\n${r.stdout}\n${r.stderr}`);
  for (const line of lines) {
    await t.test(line.replace(/^(not )?ok /, ''), () => {
      assert.ok(line.startsWith('ok '), line);
    });
  }
  assert.equal(r.status, 0, `xlir_device_tests exited with ${r.status}:\n${r.stderr}`);
});
