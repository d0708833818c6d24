// Streams a JSONL file line by line; every problem names the file and the line.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

export async function* readJsonl(path: string): AsyncGenerator<{ line: number; value: Record<string, unknown> }> {
  const rl = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let line = 0;
  for await (const text of rl) {
    line++;
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new Error(`${path}:${line}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new Error(`${path}:${line}: expected a JSON object`);
    yield { line, value: value as Record<string, unknown> };
  }
}

/** Number of non-empty lines (a first pass, so outputs can be sized before streaming). */
export async function countJsonlRecords(path: string): Promise<number> {
  let n = 0;
  const rl = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  for await (const text of rl) if (text.trim() !== '') n++;
  return n;
}
