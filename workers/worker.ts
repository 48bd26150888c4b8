/**
 * Worker entry point: `safeshift worker` and the dev stack both come through here. One worker serves workflows
 * and activities on one task queue; run as many as you like against the same queue.
 */
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import * as activities from '../activities';

export interface WorkerConfig {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  /** Reuse a prebuilt bundle (tests bundle once); by default the worker bundles `workflows/`. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

export async function createWorker(config: WorkerConfig): Promise<Worker> {
  return Worker.create({
    connection: config.connection,
    namespace: config.namespace,
    taskQueue: config.taskQueue,
    ...(config.workflowBundle
      ? { workflowBundle: config.workflowBundle }
      : { workflowsPath: require.resolve('../workflows') }),
    activities,
    // A SIGTERM'd worker lets in-flight chunk transactions finish or roll back before it exits.
    shutdownGraceTime: '10s',
    // Heartbeats (and so cancellations, e.g. of the catch-up follower when a gate settles) reach us within ~1 s.
    maxHeartbeatThrottleInterval: '1s',
  });
}
