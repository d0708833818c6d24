// Output files of long commands (`xlir encode`, `xlir index`): the folder is made and checked for
// writing before the work, so that a typo in the path fails in a second, not after an hour of
// encoding (and with the path named, not as a library's message about a temporary file).
import { accessSync, constants, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

export function prepareOutputFile(path: string, option: string): void {
  if (existsSync(path) && statSync(path).isDirectory()) throw new Error(`${option} ${path}: is a folder; give the file to write`);
  const dir = dirname(resolve(path));
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new Error(`${option} ${path}: cannot write in ${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}
