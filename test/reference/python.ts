// Runs test/reference/checkpoint_interop.py with the Python named by XLIR_PYTHON (one with torch,
// transformers, sentence-transformers, safetensors and numpy). Interop tests skip without it.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PYTHON = process.env.XLIR_PYTHON;
export const SKIP_REASON = 'XLIR_PYTHON is not set: interop with the Python reference implementations not checked ' +
  '(set XLIR_PYTHON to a python with torch, transformers, sentence-transformers, safetensors, numpy)';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'checkpoint_interop.py');

/** Runs one command of the script; the script writes its answer as JSON to a file we pass last. */
export function runPython<T = unknown>(command: string, ...args: string[]): T {
  if (!PYTHON) throw new Error('XLIR_PYTHON not set');
  const dir = mkdtempSync(join(tmpdir(), 'xlir-py-'));
  const out = join(dir, 'out.json');
  const argv = command === 'check' ? [SCRIPT, command, out, ...args] : [SCRIPT, command, ...args, out];
  const r = spawnSync(PYTHON, argv, {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: { ...process.env, TOKENIZERS_PARALLELISM: 'false', HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' },
  });
  try {
    if (r.status !== 0) {
      throw new Error(`${PYTHON} ${argv.join(' ')} failed (${r.status ?? r.signal}):\n${(r.stderr ?? '').slice(-4000)}`);
    }
    return JSON.parse(readFileSync(out, 'utf8')) as T;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
