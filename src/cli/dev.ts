/**
 * `safeshift dev [--no-worker]`: the embedded stack in the foreground. Prints a few lines for people, then
 * `ready` on its own line (scripts and tests wait for it); SIGINT / SIGTERM stop everything and exit 0.
 */
import { relative } from 'node:path';
import type { DevStack } from '../dev/stack';
import { safeshiftHome } from '../config';

const say = (line: string): void => void process.stdout.write(`${line}\n`);

function shown(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel && !rel.startsWith('..') ? rel : file;
}

export async function runDev(options: { worker: boolean }): Promise<never> {
  const abort = new AbortController();
  let signals = 0;
  let onStop!: (reason: string) => void;
  const stopRequested = new Promise<string>((resolve) => (onStop = resolve));
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals === 1) {
      process.stderr.write(`safeshift dev: ${signal}, stopping (again to force)\n`);
      abort.abort();
      onStop(signal);
    } else {
      // Exit hooks still SIGKILL the Temporal server and SIGINT PostgreSQL.
      process.stderr.write('safeshift dev: forced exit\n');
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let failure: Error | undefined;
  let stack: DevStack;
  try {
    // Loaded only here: the stack (PostgreSQL, Temporal, worker) is a heavy import that no other command needs.
    const { startDevStack } = require('../dev/stack') as typeof import('../dev/stack');
    stack = await startDevStack({
      worker: options.worker,
      signal: abort.signal,
      onFatal: (error) => {
        failure = error;
        onStop('failure');
      },
    });
  } catch (error) {
    // startDevStack already stopped whatever it had started.
    if (abort.signal.aborted) process.exit(0);
    process.stderr.write(`safeshift dev: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }

  const envFile = `${shown(safeshiftHome())}/dev.env`;
  if (stack.env.TEMPORAL_UI_URL) say(`Temporal UI:   ${stack.env.TEMPORAL_UI_URL}`);
  say(`Temporal:      ${stack.env.TEMPORAL_ADDRESS} (namespace ${stack.env.TEMPORAL_NAMESPACE})`);
  say(`DATABASE_URL:  ${stack.env.DATABASE_URL}`);
  say(options.worker ? `Worker:        task queue ${stack.env.SAFESHIFT_TASK_QUEUE}` : 'Worker:        none (--no-worker); run `safeshift worker`');
  say(`Other terminals: safeshift commands read ${envFile}; for psql/temporal: set -a; source ${envFile}; set +a`);
  say('Ctrl-C stops everything.');
  say('ready');

  await stopRequested;
  await stack.stop();
  if (failure) {
    process.stderr.write(`safeshift dev: ${failure.message}\n`);
    process.exit(1);
  }
  process.stderr.write('safeshift dev: stopped\n');
  process.exit(0);
}
