// A JSON file that may be absent or unreadable (a run's record, an experiment cell's results): null
// then, and the caller decides what that means.
import { readFileSync } from 'node:fs';

export function readJsonOrNull<T>(path: string): T | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return null;
  }
}
