// `xlir experiment --config FILE [--out DIR] [--cells ...]`: the yargs options and the handler
// (src/cli.ts wires them). Prints the report's main tables at the end.
import type { Argv } from 'yargs';
import { readFileSync } from 'node:fs';
import { readExperimentConfig } from './config.ts';
import { defaultOut, runExperiment, type ExperimentOutcome } from './runner.ts';

export function experimentOptions<T>(y: Argv<T>) {
  return y
    .option('config', { type: 'string', demandOption: true, describe: 'experiment file (YAML or JSON; see experiments/*.yaml and src/experiment/config.ts)' })
    .option('out', { type: 'string', describe: 'output folder (default: the file\'s `out`, else runs/experiments/<name>); rerunning resumes it' })
    .option('cells', { type: 'string', array: true, describe: 'only these cells: ids (hybrid-s0), variant names, s<seed>, or globs (the report covers every finished cell)' })
    .option('max-cells', { type: 'number', describe: 'train at most this many unfinished cells, then write the report and stop' })
    .option('report-only', { type: 'boolean', default: false, describe: 'write the report from the finished cells; train and evaluate nothing' })
    .option('png', { choices: ['auto', 'yes', 'no'] as const, default: 'auto' as const, describe: 'PNG pictures beside the SVGs (auto: when a font is found)' })
    .option('threads', { type: 'number', describe: 'CPU threads (default: all cores)' });
}

export interface ExperimentArgs {
  config: string;
  out?: string;
  cells?: string[];
  maxCells?: number;
  reportOnly?: boolean;
  png?: 'auto' | 'yes' | 'no';
  threads?: number;
  log?: (s: string) => void;
}

/** Runs (or resumes) the experiment; returns the outcome. Sets no exit code: see `interrupted`. */
export async function runExperimentCommand(a: ExperimentArgs): Promise<ExperimentOutcome> {
  const c = readExperimentConfig(a.config);
  const log = a.log ?? ((s: string) => process.stderr.write(s + '\n'));
  log(`experiment ${c.name}: ${c.variants.length} variants x ${c.seeds.length} seeds -> ${a.out ?? defaultOut(c)}`);
  if (a.maxCells !== undefined && !(Number.isInteger(a.maxCells) && a.maxCells >= 0)) throw new Error(`--max-cells must be an integer >= 0, got ${a.maxCells}`);
  const r = await runExperiment(c, {
    out: a.out, cells: a.cells, maxCells: a.maxCells, reportOnly: a.reportOnly, threads: a.threads, log,
    png: a.png === 'yes' ? true : a.png === 'no' ? false : 'auto',
  });
  // The headline tables, to the terminal.
  const md = readFileSync(r.report, 'utf8');
  const tables = md.split(/\n(?=## )/).filter((s) => !s.startsWith('## Cells')).map((sec) => {
    const title = /^## (.*)/.exec(sec)?.[1];
    const all = /### All languages\n\n((?:\|.*\n)+)/.exec(sec)?.[1];
    return title && all ? `${title}\n${all}` : '';
  }).filter(Boolean);
  console.log(tables.join('\n'));
  console.log(`report: ${r.report}`);
  return r;
}
