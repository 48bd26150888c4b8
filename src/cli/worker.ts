/**
 * `safeshift worker`: one worker on the task queue, against whatever Temporal the environment (or the dev
 * stack's dev.env) names. Run as many as you like. The Temporal Runtime catches SIGINT / SIGTERM and drains
 * the worker (in-flight activities get `shutdownGraceTime`); then we exit 0.
 */
import { connectWorker, loadDevEnv, temporalConfig } from '../config';

export async function runWorkerCommand(): Promise<never> {
  loadDevEnv();
  const config = temporalConfig();
  try {
    const connection = await connectWorker(config).catch((e: unknown) => {
      throw new Error(`cannot reach Temporal at ${config.address}: ${e instanceof Error ? e.message : String(e)}`);
    });
    try {
      // Loaded only here: the worker (and its bundler) is the heaviest import, and no other command needs it.
      const { createWorker } = require('../../workers/worker') as typeof import('../../workers/worker');
      const worker = await createWorker({ connection, namespace: config.namespace, taskQueue: config.taskQueue });
      process.stderr.write(
        `safeshift worker: polling task queue ${config.taskQueue} on ${config.address} (namespace ${config.namespace})\n`,
      );
      await worker.run(); // resolves once a shutdown signal has drained it
    } finally {
      await connection.close();
    }
  } catch (error) {
    process.stderr.write(`safeshift worker: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
  process.stderr.write('safeshift worker: stopped\n');
  process.exit(0);
}
