// Reading a configuration file (xlir train --config, xlir experiment --config): YAML by extension
// (.yaml/.yml), JSON otherwise; errors name the file and what is wrong with it.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

/** The parsed contents of `path`; `what` names the file in errors ("config file", "experiment file"). */
export function readStructuredFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`${what} ${path}: ${(e as Error).message}`);
  }
  const yaml = /\.ya?ml$/i.test(path);
  try {
    return yaml ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} ${path}: not valid ${yaml ? 'YAML' : 'JSON'}: ${(e as Error).message}`);
  }
}
