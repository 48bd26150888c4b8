/**
 * Small pieces every activity uses: the migration's identity, database access, liveness heartbeats, and the
 * interceptor that keeps row values out of every failure an activity reports.
 */
import { Context } from '@temporalio/activity';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import type pg from 'pg';
import { databaseUrl, DEFAULT_LIMITS, pgErrorCode, withClient, type SessionLimits } from '../src/db';
import { fatal } from '../src/errors';
import { describePgError, errorText, isPgError, scrubDeep, scrubText } from '../src/redact';
import { LockClock, setLockTimeout, type LockTiming } from '../src/swap';

export interface MigrationRef {
  /** Name of the env var holding the connection string (plan field `database`). */
  db: string;
  workflowId: string;
  runId: string;
}

/** `limits`: BULK_LIMITS for an activity whose statements scan or write whole tables (src/db.ts). */
export function withDatabase<T>(ref: Pick<MigrationRef, 'db'>, fn: (client: pg.Client) => Promise<T>, limits: SessionLimits = DEFAULT_LIMITS): Promise<T> {
  return withClient(databaseUrl(ref.db), fn, 'safeshift', limits);
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

/** Lock timeout and deadlock (a writer that read then wrote while we upgraded our lock): both worth retrying. */
const RETRY_CODES = new Set(['55P03', '40P01']);
/** Kept well under the heartbeat timeout: the activity must keep heartbeating while it backs off. */
const MAX_BACKOFF_MS = 10_000;

/**
 * Run `fn` in a transaction with lock_timeout, retrying lock timeouts with exponential backoff and jitter.
 * `settings` names what the operator can raise (the plan's fields, or the command's flags) when it gives up.
 * `beforeEach` runs before every attempt, outside the transaction (the cutover drains what was written during the
 * backoff there, so it is not replayed under the lock). `fn` times its steps on the clock it is given and marks
 * when its locks are granted; the result says how long the lock was held and where the time went.
 */
export async function underLock<T>(
  client: pg.Client,
  lock: { timeoutMs: number; attempts: number; settings: string; beforeEach?: (attempt: number) => Promise<void> },
  fn: (clock: LockClock) => Promise<T>,
): Promise<T & LockTiming & { attempts: number }> {
  const { timeoutMs: lockTimeoutMs, attempts } = lock;
  const ctx = Context.current();
  for (let attempt = 1; ; attempt++) {
    if (lock.beforeEach) await lock.beforeEach(attempt);
    await client.query('BEGIN');
    const clock = new LockClock(client);
    try {
      // Heartbeats go on while the statements under the lock run (a checksum scan can take a while), so the
      // server never starts a second attempt that would fight this one for the same locks.
      const result = await heartbeating(async () => {
        await setLockTimeout(client, lockTimeoutMs);
        return fn(clock);
      }, () => ({ attempt }));
      await clock.step('commit', () => client.query('COMMIT'));
      return { ...result, attempts: attempt, ...clock.finish() };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (!RETRY_CODES.has(pgErrorCode(err) ?? '')) throw err;
      if (attempt >= attempts) {
        throw fatal('Unsupported', `could not take the locks within ${lockTimeoutMs} ms in ${attempts} attempts (last: ${errorText(err)}): long transactions hold the table (see pg_stat_activity); raise ${lock.settings}, or retry later`);
      }
      ctx.heartbeat({ attempt, backingOff: true });
      await ctx.sleep(Math.min(MAX_BACKOFF_MS, 100 * 2 ** attempt) * (0.5 + Math.random()));
    }
  }
}

/**
 * What an activity's failure becomes before Temporal records it (history is kept, and shown by the UI): a
 * PostgreSQL error is replaced by a plain Error told without values (src/redact.ts), with the same stack frames;
 * any other error keeps its identity (a CancelledFailure must stay one) with message, stack, details and causes
 * scrubbed. Retry behaviour is unchanged: a database error was retryable and stays so, a fatal type stays fatal.
 */
export function withoutValues(err: unknown, depth = 0): unknown {
  if (isPgError(err)) {
    const safe = new Error(describePgError(err));
    safe.name = 'DatabaseError';
    const frames = (err as { stack?: string }).stack?.split('\n').filter((l) => /^\s+at /.test(l)) ?? [];
    safe.stack = [`${safe.name}: ${safe.message}`, ...frames].join('\n');
    return safe;
  }
  if (!(err instanceof Error) || depth > 8) return err;
  err.message = scrubText(err.message);
  if (err.stack) err.stack = scrubText(err.stack);
  const withDetails = err as Error & { details?: unknown };
  if (Array.isArray(withDetails.details)) Object.defineProperty(err, 'details', { value: scrubDeep(withDetails.details), configurable: true, writable: true });
  if (err.cause !== undefined) Object.defineProperty(err, 'cause', { value: withoutValues(err.cause, depth + 1), configurable: true, writable: true });
  return err;
}

/** Registered on the worker (workers/worker.ts): every activity's failure passes through withoutValues. */
export const redactActivityFailures: ActivityInterceptorsFactory = () => ({
  inbound: {
    async execute(input, next) {
      try {
        return await next(input);
      } catch (err) {
        throw withoutValues(err);
      }
    },
  },
});
