// The `xlir` command line (yargs). Each command lives in its own module; this file only wires them.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { native } from './native.ts';
import { DEMO_DEFAULTS, runDemo } from './demo.ts';
import { experimentOptions, runExperimentCommand } from './experiment/command.ts';
import { runEncode } from './encode-command.ts';
import { refuseRepeatedOptions, resolveTrainConfig, trainOptions } from './train-config.ts';
import { runTrain } from './train-command.ts';
import { convertCommands } from './convert-command.ts';
import { evalOptions, runCompare, runEval } from './eval-command.ts';
import { indexCommand, searchCommand } from './search-command.ts';

const cli = yargs(hideBin(process.argv));
await cli
  .scriptName('xlir')
  .command('demo', 'the main job on built-in data: trains X-X-mono, X-Y and hybrid tiny encoders on a 9-language retrieval set in the repository, evaluates them against the untrained model, prints the table and writes a report (no network, no ../shared)',
    (y) => y
      .option('steps', { type: 'number', default: DEMO_DEFAULTS.steps, describe: 'training steps per model' })
      .option('batch-size', { type: 'number', default: DEMO_DEFAULTS.batchSize, describe: 'query/passage pairs per batch' })
      .option('lr', { type: 'number', default: DEMO_DEFAULTS.lr, describe: 'peak learning rate (10% warm-up, then linear decay)' })
      .option('seed', { type: 'number', default: DEMO_DEFAULTS.seed, describe: 'seed of the split, initialisation, batches and dropout' })
      .option('out', { type: 'string', default: 'demo-report', describe: 'report folder' })
      .option('threads', { type: 'number', describe: 'CPU threads (default: all cores)' }),
    async (a) => {
      if (a.threads) native().setNumThreads(a.threads);
      const r = await runDemo({ steps: a.steps, batchSize: a['batch-size'], lr: a.lr, seed: a.seed, out: a.out, log: console.log });
      // Exit non-zero unless every trained variant is clearly better than the untrained model.
      if (!r.ok) process.exitCode = 1;
    })
  .command('experiment', 'run a grid of training variants x seeds from one config file (resumable), evaluate every cell and write one report with significance tests',
    (y) => experimentOptions(y),
    async (a) => {
      const r = await runExperimentCommand({ config: a.config, out: a.out, cells: a.cells, maxCells: a['max-cells'], reportOnly: a['report-only'], png: a.png, threads: a.threads });
      if (r.interrupted) process.exitCode = 130;
    })
  .command('encode', 'encode the texts of a JSONL file into a NumPy .npy matrix [N, D] (float32, input order)',
    (y) => y
      .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face or sentence-transformers model folder' })
      .option('input', { type: 'string', demandOption: true, describe: 'JSONL file, one {"text": ...} object per line' })
      .option('output', { type: 'string', demandOption: true, describe: '.npy file to write (atomically)' })
      .option('pooling', { choices: ['cls', 'mean', 'pooler'] as const, describe: 'sentence pooling (default: from the folder)' })
      .option('normalize', { type: 'boolean', describe: 'L2-normalise embeddings (default: from the folder)' })
      .option('prompt', { choices: ['query', 'passage'] as const, describe: 'the texts are queries (or passages): prefix and length default to what the model was trained with (xlir_training.json), its sentence-transformers prompt, else "Query: " 64 ("Passage: " 256)' })
      .option('max-length', { type: 'number', describe: 'tokens per text, special tokens included (default 512, or with --prompt the model\'s)' })
      .option('prefix', { type: 'string', describe: 'text prepended to every input, e.g. "Query: " (default none, or with --prompt the model\'s)' })
      .option('batch-size', { type: 'number', default: 64, describe: 'texts per engine call' })
      .option('precision', { choices: ['fp32', 'bf16'] as const, default: 'fp32' as const, describe: 'matrix-product precision' })
      .option('device', { type: 'string', default: 'cpu', describe: "'cpu' or 'cuda:N'" })
      .option('threads', { type: 'number', describe: 'CPU threads (default: all cores)' }),
    async (a) => {
      if (a.threads) native().setNumThreads(a.threads);
      await runEncode({
        model: a.model, input: a.input, output: a.output, pooling: a.pooling, normalize: a.normalize,
        maxLength: a['max-length'], prefix: a.prefix, prompt: a.prompt, batchSize: a['batch-size'], precision: a.precision, device: a.device,
      });
    })
  .command('train', 'train a dual encoder on JSONL retrieval pairs with hybrid (or mono, X-Y, multilingual) batches; resumes an interrupted run in --out',
    (y) => trainOptions(y),
    async (a) => {
      const r = await runTrain(resolveTrainConfig(a));
      // A stopped run (Ctrl-C, SIGTERM) is not a finished one: scripts can tell by the status, as with experiments.
      if (r.result.state.stopped === 'interrupted') process.exitCode = 130;
    })
  .command('convert', 'convert XQuAD-R/MLQA-R, TyDi QA or bitext into the training JSONL format', (y) => convertCommands(y))
  .command('eval', 'evaluate a model: LAReQA protocol (XQuAD-R, MLQA-R: mono / cross / multilingual mAP, R@k, rank distance), TyDi QA GoldP (monolingual mAP, R@k), Tatoeba (bitext acc@1, both directions) or TREC (nDCG@10, Recall@100)',
    (y) => evalOptions(y),
    async (a) => {
      await runEval(a);
    })
  .command('compare <results..>', 'side-by-side table of several xlir eval results (result.json files or their folders), with differences to the first',
    (y) => y
      .positional('results', { type: 'string', array: true, demandOption: true })
      .option('out', { type: 'string', describe: 'also write the table to this Markdown file' }),
    async (a) => {
      console.log(await runCompare(a.results as string[], a.out));
    })
  .command(indexCommand)
  .command(searchCommand)
  .command('info', 'print the engine build (version, threads, instruction set, CUDA availability)', {}, () => {
    console.log(JSON.stringify(native().info(), null, 2));
  })
  .demandCommand(1, 'name a command: demo, experiment, train, convert, eval, compare, index, search, encode, info')
  .strict()
  .check((a) => refuseRepeatedOptions(a, (cli as unknown as { getOptions(): { array: string[] } }).getOptions().array), true)
  .help()
  .fail((msg, err) => {
    // The message alone (the help of a command is a screen long; it was printed above the message).
    if (err) console.error(`xlir: ${err.message}`);
    else console.error(`xlir: ${msg}\n(xlir ${hideBin(process.argv).find((x) => !x.startsWith('-')) ?? ''} --help lists the options)`);
    process.exit(1);
  })
  .parseAsync();
