/**
 * Bundles `workflows/` for the worker's sandbox and writes it to the file named on the command line. Run in a
 * child process by `createWorker`: webpack's peak (100+ MB) is then never part of the worker's own memory.
 */
import { writeFileSync } from 'node:fs';
import { bundleWorkflowCode } from '@temporalio/worker';
import { FAILURE_CONVERTER_PATH } from '../src/config';

async function main(): Promise<void> {
  const out = process.argv[2];
  if (!out) throw new Error('usage: bundle <output file>');
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../workflows'),
    // Failures raised in workflows and update handlers (a refused decision's reason) are encrypted as well.
    failureConverterPath: FAILURE_CONVERTER_PATH,
    logger: { log() {}, info() {}, warn() {}, error() {}, debug() {}, trace() {} },
  });
  writeFileSync(out, code);
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
