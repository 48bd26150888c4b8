/**
 * Load protection for copy and catch-up: besides the plan's rows/s limit, back off while a standby lags more
 * than allowed (pg_stat_replication) or while the operator's throttle query says so, and stop promptly when the
 * migration is paused (a flag the workflow keeps in the ledger). What cannot be measured holds the work: a lag
 * that cannot be read is never taken for no lag.
 */
import { pgErrorCode } from './db';
import { parsedStatements } from './statements';
import { neverFunction } from './plan/expressions';
import type pg from 'pg';

export interface ThrottleSettings {
  maxReplicationLagMs: number;
  /** One SELECT; the migration backs off while its first column of the first row is true or a positive number. */
  throttleQuery?: string;
}

/** How long the throttle query may run (it runs before every chunk and replay batch). */
const THROTTLE_QUERY_TIMEOUT_MS = 5_000;

/**
 * Whether this session can see standbys' lag: without pg_read_all_stats (or pg_monitor, or superuser) the rows of
 * pg_stat_replication are there but every lag is NULL, which would read as "no lag".
 */
async function canReadReplicationLag(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>(`SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS ok`);
  return rows[0]?.ok ?? false;
}

/**
 * What is wrong with the plan's throttle query as code: it must be exactly one plain SELECT (parsed by
 * PostgreSQL's parser): no DML, also not inside a WITH, no SELECT INTO, no FOR UPDATE / FOR SHARE, no function of
 * the never-list (src/plan/expressions.ts). It also runs in a READ ONLY transaction (runThrottleQuery), which
 * refuses writes made in this session by functions it calls.
 */
export async function throttleQueryProblems(sql: string, field = 'copy.throttleQuery'): Promise<string[]> {
  let stmts: Record<string, unknown>[];
  try {
    stmts = await parsedStatements(sql);
  } catch (err) {
    return [`${field}: does not parse: ${(err as Error).message}`];
  }
  if (stmts.length !== 1) return [`${field}: must be exactly one SELECT statement (found ${stmts.length} statements)`];
  const kind = Object.keys(stmts[0]!)[0] ?? 'unknown';
  if (kind !== 'SelectStmt') return [`${field}: must be a SELECT (found ${kind})`];
  const found = new Set<string>();
  const never = new Set<string>();
  walk(stmts[0], (key, value) => {
    if (WRITING_NODES.has(key)) found.add(key);
    if (key === 'intoClause') found.add('SELECT INTO');
    if (key === 'lockingClause') found.add('FOR UPDATE / FOR SHARE');
    // READ ONLY stops this session's writes, not those of a function that opens another (dblink_exec), runs SQL text
    // the parser never sees (query_to_xml), writes files, or takes a session lock that outlives the rollback.
    if (key === 'FuncCall') {
      const names = ((value as { funcname?: { String?: { sval?: string } }[] }).funcname ?? []).map((n) => String(n.String?.sval));
      if (neverFunction(names.at(-1) ?? '')) never.add(names.join('.'));
    }
  });
  return [
    ...(found.size ? [`${field}: must only read; it holds ${[...found].sort().join(', ')}`] : []),
    ...[...never].sort().map((f) => `${field}: function ${f} is never allowed (it runs SQL, reaches another session or database, files, or acts outside the transaction)`),
  ];
}

const WRITING_NODES = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']);

function walk(node: unknown, visit: (key: string, value: unknown) => void): void {
  if (Array.isArray(node)) {
    for (const n of node) walk(n, visit);
  } else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      visit(key, value);
      walk(value, visit);
    }
  }
}

/**
 * The throttle query's first value, read in a READ ONLY transaction (always rolled back) with a statement timeout,
 * with the extended protocol (one statement). The session must not be inside a transaction.
 */
async function runThrottleQuery(client: pg.Client, sql: string): Promise<unknown> {
  // One round trip to open it: the timeout is a constant of ours, not a value from outside.
  await client.query(`BEGIN READ ONLY; SET LOCAL statement_timeout = '${THROTTLE_QUERY_TIMEOUT_MS}ms'`);
  try {
    const { rows } = await client.query({ text: sql, queryMode: 'extended', rowMode: 'array' } as pg.QueryArrayConfig);
    return rows[0]?.[0] as unknown;
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
  }
}

/**
 * Preflight's check of the load protection: a lag limit the connecting role cannot measure, and a throttle query
 * that is not a plain SELECT or does not run, are refused before anything starts.
 */
export async function throttleProblems(client: pg.Client, s: ThrottleSettings): Promise<string[]> {
  const problems: string[] = [];
  if (s.maxReplicationLagMs > 0 && !(await canReadReplicationLag(client))) {
    problems.push('copy.maxReplicationLag: the connecting role cannot read standbys\' lag (pg_stat_replication shows it only to ' +
      'members of pg_read_all_stats or pg_monitor); grant one of them, or set copy.maxReplicationLag: 0s to copy without watching standbys');
  }
  if (s.throttleQuery) {
    const wrong = await throttleQueryProblems(s.throttleQuery);
    problems.push(...wrong);
    if (wrong.length === 0) {
      await runThrottleQuery(client, s.throttleQuery).catch((err: Error & { code?: string }) => {
        problems.push(`copy.throttleQuery: fails when run (read-only, ${THROTTLE_QUERY_TIMEOUT_MS} ms at most): ${err.message}${err.code ? ` (SQLSTATE ${err.code})` : ''}`);
      });
    }
  }
  return problems;
}

/**
 * Why work should wait now, or undefined. Lag that cannot be read (no privilege, the view failing) and a throttle
 * query that fails are reasons to wait, named in status: unknown is never taken for fine.
 */
export async function throttleReason(client: pg.Client, s: ThrottleSettings): Promise<string | undefined> {
  if (s.maxReplicationLagMs > 0) {
    const lag = await worstLag(client).catch((err: Error) => ({ unreadable: err.message }));
    if ('unreadable' in lag) return `replication lag cannot be read (${lag.unreadable}); holding until it can (copy.maxReplicationLag)`;
    if (lag.worst && lag.worst.lagMs > s.maxReplicationLagMs) {
      return `standby ${lag.worst.name || '(unnamed)'} lags ${Math.round(lag.worst.lagMs)} ms > ${s.maxReplicationLagMs} ms`;
    }
  }
  if (s.throttleQuery) {
    let first: unknown;
    try {
      first = await runThrottleQuery(client, s.throttleQuery);
    } catch (err) {
      // SQLSTATE only: status and history keep this text, and an error message may quote a value.
      const code = pgErrorCode(err);
      const what = code === '57014' ? `took longer than ${THROTTLE_QUERY_TIMEOUT_MS} ms` : `fails (SQLSTATE ${code ?? 'unknown'})`;
      return `the throttle query ${what}; holding until it answers`;
    }
    if (first === true || (typeof first === 'number' && first > 0) || (typeof first === 'string' && Number(first) > 0)) {
      return 'the throttle query says so';
    }
  }
  return undefined;
}

/** The standby that lags most, if any; throws when lag cannot be read. NULL lag on a visible row is a caught-up standby. */
async function worstLag(client: pg.Client): Promise<{ worst?: { name: string; lagMs: number } }> {
  // One round trip per chunk: whether the role may see lag, and the worst lag it sees.
  const { rows } = await client.query<{ readable: boolean; name: string | null; lag_ms: number | null }>(
    `SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS readable, r.name, r.lag_ms
       FROM (SELECT 1) one LEFT JOIN LATERAL (
              SELECT application_name AS name,
                     (extract(epoch FROM greatest(write_lag, flush_lag, replay_lag)) * 1000)::float8 AS lag_ms
                FROM pg_stat_replication ORDER BY 2 DESC NULLS LAST LIMIT 1) r ON true`,
  );
  const row = rows[0]!;
  if (!row.readable) throw new Error('the connecting role is not a member of pg_read_all_stats');
  return row.lag_ms ? { worst: { name: row.name ?? '', lagMs: row.lag_ms } } : {};
}

export async function isPaused(client: pg.Client, runId: string): Promise<boolean> {
  const { rows } = await client.query<{ paused: boolean }>(`SELECT paused FROM safeshift.migrations WHERE run_id = $1`, [runId]);
  return rows[0]?.paused ?? false;
}
