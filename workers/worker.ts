/**
 * Worker entry point: `safeshift worker` and the dev stack both come through here. One worker serves workflows
 * and activities on one task queue; run as many as you like against the same queue.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { PayloadCodec } from '@temporalio/common';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import * as activities from '../activities';
import { keepAlive } from '../activities/keep-alive';
import { redactActivityFailures } from '../activities/support';
import { payloadCodecFromEnv } from '../src/codec';
import { FAILURE_CONVERTER_PATH } from '../src/config';

/**
 * The workflow bundle, made by a child process (workers/bundle.ts) so webpack's memory is freed with it: the
 * worker's own peak stays that of running migrations. Made afresh at every start, so it is never stale.
 */
async function bundleInChild(): Promise<{ code: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'safeshift-bundle-'));
  const out = join(dir, 'workflows.js');
  try {
    await promisify(execFile)(process.execPath, ['-r', 'tsx/cjs', require.resolve('./bundle.ts'), out], { cwd: join(__dirname, '..') });
    return { code: readFileSync(out, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface WorkerConfig {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  /** A prebuilt bundle; by default `workflows/` is bundled in a child process. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** Encrypts what the worker writes to history; default: the environment's keys (src/codec.ts), refused if none. */
  codec?: PayloadCodec;
}

export async function createWorker(config: WorkerConfig): Promise<Worker> {
  // Before the bundle: a worker without a codec key stops here, in a second, not after webpack.
  const codec = config.codec ?? payloadCodecFromEnv();
  return Worker.create({
    connection: config.connection,
    namespace: config.namespace,
    taskQueue: config.taskQueue,
    workflowBundle: config.workflowBundle ?? (await bundleInChild()),
    activities,
    // History holds ciphertext only (issue 14): codecs run here, outside the workflow sandbox. The failure converter
    // puts activity failures' messages and stack traces into an encrypted payload (the bundle names it too, for
    // the failures workflows and update handlers raise).
    dataConverter: { payloadCodecs: [codec], failureConverterPath: FAILURE_CONVERTER_PATH },
    // No row value in any failure an activity reports: Temporal history and the UI keep them (issue 13, finding 7).
    // keepAlive: every activity heartbeats while it runs, so a dead worker's step is retried within seconds.
    interceptors: { activity: [redactActivityFailures, keepAlive] },
    // A SIGTERM'd worker lets in-flight chunk transactions finish or roll back before it exits.
    shutdownGraceTime: '10s',
    // Heartbeats (and so cancellations, e.g. of the catch-up follower when a gate settles) reach us within ~1 s.
    maxHeartbeatThrottleInterval: '1s',
  });
}
