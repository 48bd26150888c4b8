/** Small pieces every activity uses: the migration's identity, database access, and liveness heartbeats. */
import { Context } from '@temporalio/activity';
import type pg from 'pg';
import { databaseUrl, withClient } from '../src/db';

export interface MigrationRef {
  /** Name of the env var holding the connection string (plan field `database`). */
  db: string;
  workflowId: string;
  runId: string;
}

export function withDatabase<T>(ref: Pick<MigrationRef, 'db'>, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  return withClient(databaseUrl(ref.db), fn, 'safeshift');
}

/**
 * Heartbeat every few seconds while a long statement runs, so a dead worker is noticed within the heartbeat
 * timeout and a cancellation reaches us. `details` is what a retried attempt will find in heartbeatDetails.
 */
export async function heartbeating<T>(fn: () => Promise<T>, details: () => unknown = () => undefined, everyMs = 2000): Promise<T> {
  const ctx = Context.current();
  ctx.heartbeat(details());
  const timer = setInterval(() => ctx.heartbeat(details()), everyMs);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}
