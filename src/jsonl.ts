// Streams a JSONL file line by line; every problem names the file and the line.
// Lines are split on the bytes and decoded strictly: a file that is not UTF-8 (a Latin-1 "ü") is an
// error naming the line, rather than text silently changed to U+FFFD; a UTF-8 byte-order mark
// (Windows tools write one) is skipped.
import { createReadStream } from 'node:fs';

/**
 * The lines of a text file, 1-based, decoded as UTF-8 (fatal), without their CR LF / LF, and without
 * a byte-order mark at the start of the file. JSONL here and the TREC files (src/eval/trec.ts) read
 * through it.
 */
export async function* textLines(path: string): AsyncGenerator<{ line: number; text: string }> {
  const dec = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let rest: Buffer = Buffer.alloc(0), line = 0;
  const decode = (b: Buffer) => {
    line++;
    const end = b.length && b[b.length - 1] === 13 ? b.length - 1 : b.length;
    let text: string;
    try {
      text = dec.decode(b.subarray(0, end));
    } catch {
      throw new Error(`${path}:${line}: not valid UTF-8 (the file must be saved as UTF-8)`);
    }
    return { line, text: line === 1 && text.charCodeAt(0) === 0xfeff ? text.slice(1) : text };
  };
  for await (const chunk of createReadStream(path)) {
    const buf = rest.length ? Buffer.concat([rest, chunk as Buffer]) : (chunk as Buffer);
    let start = 0, nl: number;
    while ((nl = buf.indexOf(10, start)) >= 0) {
      yield decode(buf.subarray(start, nl));
      start = nl + 1;
    }
    rest = buf.subarray(start);
  }
  if (rest.length) yield decode(rest);
}

export async function* readJsonl(path: string): AsyncGenerator<{ line: number; value: Record<string, unknown> }> {
  for await (const { line, text } of textLines(path)) {
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
  for await (const { text } of textLines(path)) if (text.trim() !== '') n++;
  return n;
}
