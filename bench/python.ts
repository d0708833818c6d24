// Which python runs the PyTorch peer (bench/torch_train_step.py): $XLIR_PYTHON, else the
// project's venv made by scripts/setup.sh.
import { existsSync } from 'node:fs';

export function pythonPath(): string | undefined {
  if (process.env.XLIR_PYTHON) return process.env.XLIR_PYTHON;
  for (const p of ['.venv/bin/python', '/tmp/venv/bin/python']) if (existsSync(p)) return p;
  return undefined;
}
