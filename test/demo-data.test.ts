// The built-in demo's multilingual retrieval set (data/demo/items.jsonl, described in
// data/demo/README.md): format, completeness of every group, scripts, lengths and numbers
// consistent across translations. Pure data checks; nothing is trained here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const FILE = join(dirname(fileURLToPath(import.meta.url)), '..', 'data', 'demo', 'items.jsonl');
const LANGS = ['en', 'es', 'de', 'ru', 'ar', 'hi', 'sw', 'yo', 'te'] as const;
const MIN_GROUPS = 120;
const FIELDS = ['group', 'lang', 'dataset', 'query', 'positive'];

// Letters a line in each language must contain, and letters of other scripts it must not.
const LATIN = /\p{Script=Latin}/u;
const SCRIPT: Record<string, RegExp> = {
  en: LATIN, es: LATIN, de: LATIN, sw: LATIN, yo: LATIN,
  ru: /\p{Script=Cyrillic}/u, ar: /\p{Script=Arabic}/u, hi: /\p{Script=Devanagari}/u, te: /\p{Script=Telugu}/u,
};
const NON_LATIN = /[\p{Script=Cyrillic}\p{Script=Arabic}\p{Script=Devanagari}\p{Script=Telugu}]/u;

// Passage length in whitespace-separated words: the English source is 15-35 words (the brief);
// translations get a wider band (Telugu is agglutinative, Yoruba and Hindi spell out more words).
const EN_WORDS: [number, number] = [15, 35];
const OTHER_WORDS: [number, number] = [8, 60];
// A translation's length in characters relative to its English version: catches a truncated or
// doubled passage.
const CHAR_RATIO: [number, number] = [0.5, 2.2];

interface Line {
  group: string; lang: string; dataset: string; query: string; positive: string;
  lineNo: number;
}

function load(): Line[] {
  const buf = readFileSync(FILE);
  assert.ok(!(buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf), 'file starts with a UTF-8 BOM');
  const text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  assert.ok(text.endsWith('\n'), 'file does not end with a newline');
  assert.ok(!text.includes('\r'), 'file has CR line endings');
  const out: Line[] = [];
  text.slice(0, -1).split('\n').forEach((raw, i) => {
    const where = `line ${i + 1}`;
    let obj: unknown;
    try { obj = JSON.parse(raw); } catch (e) { assert.fail(`${where}: not JSON (${(e as Error).message})`); }
    assert.ok(obj !== null && typeof obj === 'object' && !Array.isArray(obj), `${where}: not an object`);
    const rec = obj as Record<string, unknown>;
    assert.deepEqual(Object.keys(rec).sort(), [...FIELDS].sort(), `${where}: fields`);
    for (const f of FIELDS) {
      const v = rec[f];
      assert.equal(typeof v, 'string', `${where}: ${f} is not a string`);
      assert.ok((v as string).trim().length > 0, `${where}: ${f} is empty`);
      assert.equal(v, (v as string).trim(), `${where}: ${f} has surrounding whitespace`);
      assert.ok(!/[\n\t\u00a0\u200b]|\s{2}/.test(v as string), `${where}: ${f} has odd whitespace`);
      assert.equal(v, (v as string).normalize('NFC'), `${where}: ${f} is not NFC`);
    }
    out.push({ ...(rec as unknown as Omit<Line, 'lineNo'>), lineNo: i + 1 });
  });
  return out;
}

const lines = load();
const byGroup = new Map<string, Map<string, Line>>();
for (const l of lines) {
  if (!byGroup.has(l.group)) byGroup.set(l.group, new Map());
  const g = byGroup.get(l.group)!;
  assert.ok(!g.has(l.lang), `line ${l.lineNo}: ${l.group} has ${l.lang} twice`);
  g.set(l.lang, l);
}

/** Numbers in a text: runs of ASCII digits, with a decimal or thousands mark between digits dropped. */
function numbers(s: string): string[] {
  return (s.replace(/(?<=\d)[.,](?=\d)/g, '').match(/\d+/g) ?? []).sort();
}
const words = (s: string) => s.split(/\s+/).length;

test('every line is a demo record with a known group id and language', () => {
  for (const l of lines) {
    assert.equal(l.dataset, 'demo', `line ${l.lineNo}`);
    assert.match(l.group, /^demo-\d{3}$/, `line ${l.lineNo}`);
    assert.ok((LANGS as readonly string[]).includes(l.lang), `line ${l.lineNo}: language ${l.lang}`);
  }
});

test(`at least ${MIN_GROUPS} groups, numbered from demo-001 without gaps, each in all ${LANGS.length} languages`, () => {
  assert.ok(LANGS.length >= 8);
  assert.ok(byGroup.size >= MIN_GROUPS, `${byGroup.size} groups`);
  assert.equal(lines.length, byGroup.size * LANGS.length);
  const ids = [...byGroup.keys()];
  ids.forEach((id, i) => assert.equal(id, `demo-${String(i + 1).padStart(3, '0')}`));
  for (const [id, g] of byGroup) assert.deepEqual([...g.keys()].sort(), [...LANGS].sort(), id);
});

test('no query or passage repeats within a language, and no query equals a passage', () => {
  for (const lang of LANGS) {
    for (const field of ['query', 'positive'] as const) {
      const seen = new Map<string, number>();
      for (const l of lines.filter((x) => x.lang === lang)) {
        const key = l[field].toLowerCase();
        assert.ok(!seen.has(key), `${lang} ${field} of line ${l.lineNo} repeats line ${seen.get(key)}`);
        seen.set(key, l.lineNo);
      }
    }
  }
  for (const l of lines) assert.notEqual(l.query, l.positive, `line ${l.lineNo}`);
});

test('each language is written in its script (Latin, Cyrillic, Arabic, Devanagari, Telugu)', () => {
  for (const l of lines) {
    for (const text of [l.query, l.positive]) {
      assert.match(text, SCRIPT[l.lang], `line ${l.lineNo} (${l.lang}): ${text}`);
      if (SCRIPT[l.lang] === LATIN) assert.doesNotMatch(text, NON_LATIN, `line ${l.lineNo} (${l.lang})`);
      else assert.ok((text.match(/\p{L}/gu) ?? []).filter((c) => SCRIPT[l.lang].test(c)).length
        >= 0.6 * (text.match(/\p{L}/gu) ?? []).length, `line ${l.lineNo} (${l.lang}): mostly another script`);
    }
  }
  // Yoruba is written with its tone marks and underdots; a line with none is likely untoned.
  const yo = lines.filter((l) => l.lang === 'yo');
  for (const l of yo) assert.match(l.positive.normalize('NFD'), /[\u0300\u0301\u0323]/, `line ${l.lineNo}: Yoruba without diacritics`);
});

test('queries are questions, passages are sentences', () => {
  for (const l of lines) {
    assert.match(l.query, /[?؟]$/, `line ${l.lineNo}: query does not end with a question mark`);
    assert.match(l.positive, /[.।]$/, `line ${l.lineNo}: passage does not end with a full stop`);
    assert.ok(l.query.length < l.positive.length, `line ${l.lineNo}: query longer than its passage`);
  }
});

test('passage lengths are within bounds', () => {
  for (const [id, g] of byGroup) {
    const en = g.get('en')!.positive;
    const n = words(en);
    assert.ok(n >= EN_WORDS[0] && n <= EN_WORDS[1], `${id} en: ${n} words`);
    for (const [lang, l] of g) {
      if (lang === 'en') continue;
      const m = words(l.positive);
      assert.ok(m >= OTHER_WORDS[0] && m <= OTHER_WORDS[1], `${id} ${lang}: ${m} words`);
      const r = l.positive.length / en.length;
      assert.ok(r >= CHAR_RATIO[0] && r <= CHAR_RATIO[1], `${id} ${lang}: ${r.toFixed(2)} x the English length`);
    }
  }
});

test('numbers are the same in every translation (ASCII digits)', () => {
  for (const l of lines) assert.doesNotMatch(l.query + l.positive, /[^\P{Nd}0-9]/u, `line ${l.lineNo}: non-ASCII digits`);
  for (const [id, g] of byGroup) {
    const en = g.get('en')!;
    for (const field of ['query', 'positive'] as const) {
      const want = numbers(en[field]);
      for (const [lang, l] of g) assert.deepEqual(numbers(l[field]), want, `${id} ${lang} ${field}`);
    }
  }
});
