/**
 * Phase 6, catch-up: replay captured changes into the target in batches, one target transaction each.
 * `drain` returns once the backlog is small (or the slice is over); `follow` keeps the target close behind the
 * source for as long as the slice lasts, sleeping when there is nothing to do: that is what runs while an
 * approver takes days at the cutover gate. No compensation of its own: removing capture and the target undoes it.
 */
import { Context } from '@temporalio/activity';
import { backlog, replayBatch, type Backlog } from '../src/capture';
import { inTransaction } from '../src/db';
import { REPLAY_BEGIN } from '../src/replay';
import { isPaused, throttleReason, type ThrottleSettings } from '../src/throttle';
import type { CopySpec } from '../src/projection';
import { withDatabase } from './support';

export interface CatchUpInput {
  db: string;
  runId: string;
  throttle: ThrottleSettings;
  spec: CopySpec;
  sourceOid: number;
  mode: 'drain' | 'follow';
  /** drain: done once at most this many changes wait. */
  smallBacklog: number;
  batch: number;
  sliceMs: number;
  maxRowsPerSecond: number;
}

export interface CatchUpResult extends Backlog {
  replayedChanges: number;
  replayedKeys: number;
  batches: number;
  caughtUp: boolean;
  throttledMs: number;
  throttleReason?: string;
  /** drain only: returned early because the migration is paused. */
  paused: boolean;
}

export async function catchUp(input: CatchUpInput): Promise<CatchUpResult> {
  const ctx = Context.current();
  const started = Date.now();
  const result: CatchUpResult = { rows: 0, lagSeconds: 0, replayedChanges: 0, replayedKeys: 0, batches: 0, caughtUp: false, throttledMs: 0, paused: false };
  return withDatabase(input, async (client) => {
    for (;;) {
      Object.assign(result, await backlog(client, input.sourceOid));
      ctx.heartbeat(result);
      if (ctx.cancellationSignal.aborted) return result;
      if (input.mode === 'drain' && result.rows <= input.smallBacklog) {
        result.caughtUp = true;
        return result;
      }
      if (Date.now() - started >= input.sliceMs) return result;
      const paused = await isPaused(client, input.runId);
      const reason = paused ? undefined : await throttleReason(client, input.throttle);
      if (paused && input.mode === 'drain') {
        result.paused = true;
        return result;
      }
      if (paused || reason) {
        // Following at a gate: a paused or throttled migration simply waits here, heartbeating.
        if (reason) {
          result.throttleReason = reason;
          result.throttledMs += 1000;
        }
        await Promise.race([ctx.sleep(1000), ctx.cancelled]).catch(() => undefined);
        continue;
      }
      if (result.rows === 0) {
        result.caughtUp = true;
        // Nothing to do: wake up once a second (cancellation arrives with the heartbeat reply).
        await Promise.race([ctx.sleep(1000), ctx.cancelled]).catch(() => undefined);
        continue;
      }
      const batchStarted = Date.now();
      const done = await inTransaction(client, () => replayBatch(client, input.spec, input.sourceOid, input.batch), REPLAY_BEGIN);
      result.replayedChanges += done.changes;
      result.replayedKeys += done.keys;
      result.batches += 1;
      if (input.maxRowsPerSecond > 0) {
        const wait = Math.ceil((done.keys * 1000) / input.maxRowsPerSecond) - (Date.now() - batchStarted);
        if (wait > 0) await ctx.sleep(wait);
      }
    }
  });
}
