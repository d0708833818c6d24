// `xlir convert`: public datasets -> the training-data format (src/data/FORMAT.md). Each converter
// lives in src/data/; this module only maps flags to their options and prints their reports.
import { basename } from 'node:path';
import type { Argv } from 'yargs';
import { convertLareqaToFile } from './data/convert-lareqa.ts';
import { convertTydiqaToFile } from './data/convert-tydiqa.ts';
import { convertBitextToFile, resolveTatoebaCode, tatoebaPairFiles } from './data/convert-bitext.ts';
import { formatConvertReport, type ConvertReport } from './data/report.ts';

function done(out: string, r: ConvertReport, caution?: string): void {
  process.stderr.write(`${formatConvertReport(r)}\nwrote ${out}\n${caution ? `note: ${caution}\n` : ''}`);
}

// Evaluation sets turned into training data make their own evaluation meaningless (a model that has
// seen Tatoeba's pairs finds them): said where it happens, since nothing later can tell.
const EVAL_CAUTION = {
  tatoeba: 'Tatoeba is an evaluation set: a model trained on these lines must not be evaluated on this pair (xlir eval --bench tatoeba)',
  tydiqaDev: 'a TyDi QA dev file is what xlir eval --bench tydiqa evaluates on: train on the train files to evaluate on dev',
  lareqaAll: 'all articles: train on --split train, and evaluate with xlir eval --articles test (same --test-fraction and --split-seed), so that no article is in both',
};

export function convertCommands<T>(y: Argv<T>) {
  return y
    .command('lareqa', 'XQuAD-R / MLQA-R (LAReQA JSON, <lang>.json files): one record per question and language, grouped by question id',
      (c) => c
        .option('data', { type: 'string', demandOption: true, describe: 'folder of <lang>.json files' })
        .option('out', { type: 'string', demandOption: true, describe: 'JSONL file to write' })
        .option('languages', { type: 'string', array: true, describe: 'languages to write (default: all files)' })
        .option('split', { choices: ['train', 'test'] as const, describe: 'keep only the train or the test articles of the article split' })
        .option('test-fraction', { type: 'number', default: 0.5, describe: 'fraction of articles on the test side of the split' })
        .option('split-seed', { type: 'number', default: 0, describe: 'seed of the article split (use the same one with xlir eval --articles)' })
        .option('context', { choices: ['paragraph', 'none'] as const, default: 'paragraph' as const, describe: 'positive = answer sentence + its paragraph (as evaluated), or the sentence alone' })
        .option('hard-negatives', { type: 'number', default: 0, describe: 'other sentences of the answer\'s paragraph as hard negatives' }),
      async (a) => done(a.out, await convertLareqaToFile(a.data, a.out, {
        languages: a.languages, context: a.context, hardNegatives: a['hard-negatives'],
        split: a.split ? { keep: a.split, testFraction: a['test-fraction'], seed: a['split-seed'] } : undefined,
      }), a.split === undefined ? EVAL_CAUTION.lareqaAll : undefined))
    .command('tydiqa <files..>', 'TyDi QA GoldP (SQuAD v1.1 JSON): monolingual question -> passage records',
      (c) => c
        .positional('files', { type: 'string', array: true, demandOption: true, describe: 'e.g. swahili_tydiqa_dev.json (language from the name)' })
        .option('out', { type: 'string', demandOption: true, describe: 'JSONL file to write' })
        .option('lang', { type: 'string', describe: 'language of every file (default: from the file name)' }),
      async (a) => done(a.out, await convertTydiqaToFile(a.files as string[], a.out, { lang: a.lang }),
        (a.files as string[]).some((f) => /dev/i.test(basename(f))) ? EVAL_CAUTION.tydiqaDev : undefined))
    .command('bitext', 'line-aligned bitext (e.g. Tatoeba) -> bitext records for the alignment objective',
      (c) => c
        .option('a', { type: 'string', describe: 'first file (language from its extension, e.g. .deu)' })
        .option('b', { type: 'string', describe: 'second file, line-aligned with the first' })
        .option('lang-a', { type: 'string', describe: 'language of --a (default: its extension)' })
        .option('lang-b', { type: 'string', describe: 'language of --b (default: its extension)' })
        .option('tatoeba', { type: 'string', describe: 'or: a Tatoeba (LASER) folder, with --code' })
        .option('code', { type: 'string', describe: 'the Tatoeba pair\'s language: its three-letter code (swh) or the language\'s code (sw)' })
        .option('out', { type: 'string', demandOption: true, describe: 'JSONL file to write' }),
      async (a) => {
        let files: [string, string];
        if (a.tatoeba) {
          if (!a.code) throw new Error('--tatoeba needs --code (e.g. --code swh for tatoeba.swh-eng.*)');
          files = tatoebaPairFiles(a.tatoeba, resolveTatoebaCode(a.tatoeba, a.code));
        } else if (a.a && a.b) files = [a.a, a.b];
        else throw new Error('give --a FILE --b FILE, or --tatoeba DIR --code XXX');
        done(a.out, await convertBitextToFile(files[0], files[1], a.out, { langA: a['lang-a'], langB: a['lang-b'] }), /(^|[/\\])tatoeba\.[a-z]{3}-eng\./.test(files[0]) ? EVAL_CAUTION.tatoeba : undefined);
      })
    .demandCommand(1, 'name a converter: lareqa, tydiqa, bitext');
}
