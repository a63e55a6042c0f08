// `npm run mutate [-- <module> ...]`: mutation testing with StrykerJS, once per module listed in
// stryker.config.mjs, each run with only that module's tests, so a run takes minutes. Prints the
// mutation score and the time of each run, and writes an HTML and a JSON report per module under
// reports/mutation/ (the survivors are listed there, and by the clear-text reporter as it goes).
//
// Plain JavaScript, run by node without tsx: Stryker starts its own test processes (with tsx, as
// the config says), and this file imports the config file itself.

import { mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Stryker } from '@stryker-mutator/core';
import config, { mutationModules } from '../stryker.config.mjs';

const usage = `Usage: npm run mutate [-- <module> ...]

Runs StrykerJS once per module (all of them by default): ${Object.keys(mutationModules).join(', ')}.
Reports go to reports/mutation/<module>.html and .json, the scores to reports/mutation/summary.json.`;

const requested = process.argv.slice(2);
if (requested.includes('-h') || requested.includes('--help')) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}
const unknown = requested.filter((name) => !(name in mutationModules));
if (unknown.length > 0) {
  process.stderr.write(`mutate: no module named ${unknown.join(', ')}\n\n${usage}\n`);
  process.exit(2);
}
const names = requested.length > 0 ? requested : Object.keys(mutationModules);
process.chdir(fileURLToPath(new URL('..', import.meta.url)));
// Tests that read it (control-server.test.ts) wait this long for an answer before failing: a
// mutant that leaves a request unanswered fails fast instead of running into Stryker's timeout.
process.env.THESEUS_TEST_DEADLINE_MS ??= '1000';

/** Stryker's own definition: killed or timed out over all that ran or had no test reaching them. */
function score(counts) {
  const detected = counts.Killed + counts.Timeout;
  const valid = detected + counts.Survived + counts.NoCoverage;
  return valid === 0 ? null : Math.round((1000 * detected) / valid) / 10;
}

const summary = [];
const startedAll = performance.now();
for (const name of names) {
  const module = mutationModules[name];
  const started = performance.now();
  const results = await new Stryker({
    mutate: [module.mutate],
    tap: { ...config.tap, testFiles: module.tests },
    ...(module.timeoutMS ? { timeoutMS: module.timeoutMS } : {}),
    ...(module.coverageAnalysis ? { coverageAnalysis: module.coverageAnalysis } : {}),
    htmlReporter: { fileName: `reports/mutation/${name}.html` },
    jsonReporter: { fileName: `reports/mutation/${name}.json` },
  }).runMutationTest();
  const counts = { Killed: 0, Timeout: 0, Survived: 0, NoCoverage: 0, RuntimeError: 0, CompileError: 0, Ignored: 0, Pending: 0 };
  for (const result of results) counts[result.status] = (counts[result.status] ?? 0) + 1;
  summary.push({ module: name, file: module.mutate, tests: module.tests, score: score(counts), mutants: results.length, ...counts, seconds: Math.round((performance.now() - started) / 1000) });
}
const totalSeconds = Math.round((performance.now() - startedAll) / 1000);

await mkdir('reports/mutation', { recursive: true });
await writeFile('reports/mutation/summary.json', `${JSON.stringify({ totalSeconds, modules: summary }, null, 2)}\n`);
const rows = [
  ['MODULE', 'SCORE', 'MUTANTS', 'KILLED', 'TIMEOUT', 'SURVIVED', 'NO COVERAGE', 'ERRORS', 'TIME'],
  ...summary.map((s) => [s.module, s.score === null ? '-' : `${s.score} %`, s.mutants, s.Killed, s.Timeout, s.Survived, s.NoCoverage, s.RuntimeError + s.CompileError, `${s.seconds} s`].map(String)),
];
const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
process.stdout.write(`\n${rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ')).join('\n')}\nin all: ${totalSeconds} s\n`);
