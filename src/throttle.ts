/**
 * Load protection for copy and catch-up: besides the plan's rows/s limit, back off while a standby lags more
 * than allowed (pg_stat_replication) or while the operator's throttle query says so, and stop promptly when the
 * migration is paused (a flag the workflow keeps in the ledger).
 */
import type pg from 'pg';

export interface ThrottleSettings {
  maxReplicationLagMs: number;
  /** One statement; the migration backs off while its first column of the first row is true or a positive number. */
  throttleQuery?: string;
}

/** Why work should wait now, or undefined. Never throws for a missing privilege: lag is then unknown, not high. */
export async function throttleReason(client: pg.Client, s: ThrottleSettings): Promise<string | undefined> {
  if (s.maxReplicationLagMs > 0) {
    const { rows } = await client.query<{ name: string; lag_ms: number | null }>(
      `SELECT application_name AS name,
              (extract(epoch FROM greatest(write_lag, flush_lag, replay_lag)) * 1000)::float8 AS lag_ms
         FROM pg_stat_replication ORDER BY 2 DESC NULLS LAST LIMIT 1`,
    ).catch(() => ({ rows: [] as { name: string; lag_ms: number | null }[] }));
    const worst = rows[0];
    if (worst?.lag_ms && worst.lag_ms > s.maxReplicationLagMs) {
      return `standby ${worst.name || '(unnamed)'} lags ${Math.round(worst.lag_ms)} ms > ${s.maxReplicationLagMs} ms`;
    }
  }
  if (s.throttleQuery) {
    const { rows } = await client.query({ text: s.throttleQuery, queryMode: 'extended', rowMode: 'array' } as pg.QueryArrayConfig);
    const first = rows[0]?.[0] as unknown;
    if (first === true || (typeof first === 'number' && first > 0) || (typeof first === 'string' && Number(first) > 0)) {
      return 'the throttle query says so';
    }
  }
  return undefined;
}

export async function isPaused(client: pg.Client, runId: string): Promise<boolean> {
  const { rows } = await client.query<{ paused: boolean }>(`SELECT paused FROM safeshift.migrations WHERE run_id = $1`, [runId]);
  return rows[0]?.paused ?? false;
}
