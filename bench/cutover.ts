/**
 * `npm run bench:cutover`: how long application writers are blocked by safeshift's cutover (issue 3).
 *
 * Creates its own table `public.bench_cutover_<n>` (BENCH_ROWS rows, default 200,000) and migrates it to a target
 * with one more column, while a steady writer (BENCH_WRITERS connections, default 4, BENCH_WRITES_PER_SECOND in
 * total, default 200; 80 % single-row UPDATEs, 20 % INSERTs, each connection owning its own ids) writes to the live
 * name from BENCH_BEFORE_SECONDS before the migration until BENCH_AFTER_SECONDS after it is done. Every statement
 * is timed; the cutover window is read from the audit log (`phase:cutover` .. `phase:verify`). A writer slot that
 * passed while its connection was blocked is skipped, not made up later, so the rate dips during a block and the
 * latency of the blocked statement is the figure that counts.
 *
 * Reports the rate achieved, latency per part of the run, the writes blocked by the cutover (max, p99), the lock
 * held time of the swap, and checks with its own SQL that the live table holds exactly what the writer wrote.
 * Not a test: it asserts nothing.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import pg from 'pg';
import { startMigration } from '../src/cli/migrations';
import type { StatusJson } from '../src/cli/render';
import { connectClient, temporalConfig } from '../src/config';
import { attachOrStartDevStack } from '../src/dev/stack';
import { migrationWorkflowId } from '../src/messages';
import { fmt, newWriterState, nowMs, startWriter, stats } from './writer';

const ROWS = Number(process.env.BENCH_ROWS ?? 200_000);
const WRITERS = Number(process.env.BENCH_WRITERS ?? 4);
const RATE = Number(process.env.BENCH_WRITES_PER_SECOND ?? 200);
const BEFORE_MS = Number(process.env.BENCH_BEFORE_SECONDS ?? 3) * 1000;
const AFTER_MS = Number(process.env.BENCH_AFTER_SECONDS ?? 3) * 1000;
const HARD_TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_SECONDS ?? 300) * 1000;
/** Writer values start here; seeded rows have v = id % 1000, so the two never mix. */
const WRITER_V0 = 1_000_000;

const say = (line: string) => process.stdout.write(`${line}\n`);
async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const began = nowMs();
  const hardDeadline = began + HARD_TIMEOUT_MS;
  const stack = await attachOrStartDevStack({ log: () => undefined });
  const dir = mkdtempSync(join(tmpdir(), 'safeshift-bench-cutover-'));
  let admin: pg.Client | undefined;
  try {
    const url = process.env.DATABASE_URL!;
    admin = new pg.Client({ connectionString: url, application_name: 'bench cutover' });
    await admin.connect();

    const n = Math.floor(Date.now() / 1000);
    const name = `bench_cutover_${n}`;
    const table = `public.${name}`;
    const planName = `bench-cutover-${n}`;
    const workflowId = migrationWorkflowId(planName);

    const seeded = nowMs();
    await admin.query(`CREATE TABLE ${table} (id bigint PRIMARY KEY, v int NOT NULL, note text, updated_at timestamptz NOT NULL)`);
    await admin.query(`INSERT INTO ${table} SELECT g, g % 1000, 'seed ' || md5(g::text), now() - g * interval '1 second' FROM generate_series(1, $1::int) g`, [ROWS]);
    await admin.query(`VACUUM ANALYZE ${table}`);
    const seedSeconds = (nowMs() - seeded) / 1000;

    const planFile = join(dir, 'plan.yaml');
    writeFileSync(planFile, [
      'version: 1',
      `name: ${planName}`,
      'database: DATABASE_URL',
      'requestedBy: carol',
      `source: ${table}`,
      `target: ${table}_v2`,
      'create: |',
      `  CREATE TABLE ${table}_v2 (id bigint PRIMARY KEY, v int NOT NULL, note text, updated_at timestamptz NOT NULL, note_length int)`,
      'columns:',
      '  note_length: length(note)',
      'copy: { chunkRows: 50000 }',
      'backup: { table: false }',
      'cutover: { lockTimeoutMs: 2000, attempts: 10 }',
      'approvals:',
      '  cutover: { approvers: [alice], required: 1 }',
      '  drop: { approvers: [alice], required: 1, notBefore: 0s }',
      '',
    ].join('\n'));

    // The writer: from BEFORE_MS before the migration until AFTER_MS after it is done.
    const state = newWriterState();
    let stopAt = Infinity;
    const stop = () => nowMs() >= stopAt;
    const writerStart = nowMs();
    // This process may host the worker (when it started the stack): a busy event loop delays the writer's own
    // timing, so loop lag is sampled and shown beside the latencies.
    const lag: [number, number][] = [];
    let tick = nowMs();
    const lagTimer = setInterval(() => { const t = nowMs(); lag.push([t, Math.max(0, t - tick - 10)]); tick = t; }, 10);
    const writersDone = startWriter({ url, table, rows: ROWS, writers: WRITERS, rate: RATE }, state, WRITER_V0, stop, hardDeadline);
    await sleep(BEFORE_MS);

    const migrationStart = nowMs();
    let json = '';
    const printed: string[] = [];
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((ok) => { timer = setTimeout(() => ok('timeout'), Math.max(0, hardDeadline - nowMs() - AFTER_MS - 10_000)); });
    const outcome = await Promise.race([
      startMigration(planFile, { autoApprove: true, json: true }, (line) => { if (line.startsWith('{')) json = line; else printed.push(line); }),
      timeout,
    ]).finally(() => clearTimeout(timer));
    const migrationEnd = nowMs();
    if (outcome === 'timeout') {
      const client = await connectClient(temporalConfig());
      await client.workflow.getHandle(workflowId).terminate('bench cutover: hard timeout').catch(() => undefined);
      await client.connection.close();
    }
    stopAt = nowMs() + AFTER_MS;
    const lanesResult = await writersDone;
    const writerEnd = nowMs();
    clearInterval(lagTimer);
    for (const r of lanesResult) if (r.status === 'rejected') state.errors.push(`writer lane failed: ${(r.reason as Error).message}`);

    const status = json ? (JSON.parse(json) as StatusJson) : undefined;
    const { rows: audit } = await admin.query<{ action: string; at: number; details: Record<string, unknown> }>(
      `SELECT action, extract(epoch FROM at)::float8 * 1000 AS at, details FROM safeshift.audit_log WHERE workflow_id = $1 ORDER BY seq`, [workflowId]);
    const at = (action: string) => audit.find((r) => r.action === action)?.at;
    const copyAt = at('phase:copy');
    const cutoverAt = at('phase:cutover');
    const verifyAt = at('phase:verify');
    const validateAt = at('phase:validate');
    const swapped = audit.find((r) => r.action === 'cutover:swapped')?.details;

    // Latency per part of the run, by statement start.
    const writes = state.writes;
    const parts: [string, number, number][] = [
      ['before the migration', -Infinity, migrationStart],
      ['preflight .. copy start', migrationStart, copyAt ?? migrationStart],
      ['copy + catch-up', copyAt ?? migrationStart, validateAt ?? migrationEnd],
      ['validate + cutover gate', validateAt ?? migrationEnd, cutoverAt ?? migrationEnd],
      ['cutover window', cutoverAt ?? migrationEnd, verifyAt ?? migrationEnd],
      ['verify .. done', verifyAt ?? migrationEnd, migrationEnd],
      ['after the migration', migrationEnd, Infinity],
    ];
    const blocked = cutoverAt !== undefined && verifyAt !== undefined
      ? writes.filter((w) => w.start < verifyAt && w.start + w.ms > cutoverAt) : [];

    // Own check: the live table holds exactly what the writer committed, and the seeded rows it did not touch.
    const live = await admin.query<{ id: string; v: number }>(`SELECT id, v FROM ${table} WHERE v >= $1`, [WRITER_V0]);
    const totals = await admin.query<{ total: string; seeded_ok: string; seeded_bad: string }>(
      `SELECT count(*) AS total, count(*) FILTER (WHERE v < $1 AND id <= $2 AND v = id % 1000) AS seeded_ok,
              count(*) FILTER (WHERE v < $1 AND NOT (id <= $2 AND v = id % 1000)) AS seeded_bad FROM ${table}`, [WRITER_V0, ROWS]);
    const shape = await admin.query<{ ok: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'note_length' AND NOT attisdropped) AS ok`, [table]);
    const problems: string[] = [];
    const seen = new Map(live.rows.map((r) => [Number(r.id), r.v]));
    for (const [id, want] of state.expected) {
      if (state.uncertain.has(id)) continue;
      const got = seen.get(id);
      if (got !== want) problems.push(`id ${id}: writer wrote v=${want}, live table has ${got === undefined ? 'no writer value' : `v=${got}`}`);
    }
    for (const [id, got] of seen) if (!state.expected.has(id) && !state.uncertain.has(id)) problems.push(`id ${id}: live table has v=${got}, never committed by the writer`);
    const touchedSeeded = [...state.expected.keys()].filter((id) => id <= ROWS).length;
    const t = totals.rows[0]!;
    if (Number(t.total) !== ROWS + state.inserted) problems.push(`live table has ${t.total} rows, expected ${ROWS} seeded + ${state.inserted} inserted = ${ROWS + state.inserted}`);
    if (Number(t.seeded_bad) > 0) problems.push(`${t.seeded_bad} rows with values neither seeded nor written`);
    if (Number(t.seeded_ok) !== ROWS - touchedSeeded) problems.push(`${t.seeded_ok} untouched seeded rows, expected ${ROWS - touchedSeeded}`);
    if (!shape.rows[0]?.ok) problems.push(`${table} is not the new table (no note_length column)`);

    if (!process.env.BENCH_KEEP) await admin.query(`DROP TABLE IF EXISTS ${table}, ${table}_v2`);

    // Report.
    const failed = writes.filter((w) => !w.ok).length;
    const missed = writes.filter((w) => w.missed).length;
    const seconds = (writerEnd - writerStart) / 1000;
    say(`table ${table}: ${ROWS} rows (seeded in ${seedSeconds.toFixed(1)} s), target adds note_length = length(note); node ${process.version}`);
    say(`migration ${workflowId}: ${status ? `${status.phase}${status.outcome ? ` (${status.outcome.reason})` : ''}` : outcome === 'timeout' ? 'TIMED OUT (terminated)' : 'no status'}` +
      ` in ${((migrationEnd - migrationStart) / 1000).toFixed(1)} s`);
    if (status) say(`  phases: ${Object.entries(status.phaseDurationsMs).map(([p, ms]) => `${p} ${(ms / 1000).toFixed(2)}s`).join(', ')}`);
    for (const line of printed.filter((l) => !l.startsWith('started') && !l.startsWith('watch'))) say(`  ${line}`);
    say(`writer: ${WRITERS} connections, target ${RATE}/s, achieved ${(writes.length / seconds).toFixed(1)}/s over ${seconds.toFixed(1)} s; ` +
      `${writes.length} writes (${state.inserted} inserts), ${failed} failed, ${missed} updates that found no row`);
    say('');
    say(`${'writes started'.padEnd(26)}${'n'.padStart(7)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'max ms'.padStart(9)}${'loop lag max'.padStart(14)}`);
    for (const [label, from, to] of parts) {
      const s = stats(writes.filter((w) => w.start >= from && w.start < to).map((w) => w.ms));
      const loop = Math.max(0, ...lag.filter(([t]) => t >= from && t < to).map(([, l]) => l));
      say(`${label.padEnd(26)}${String(s.n).padStart(7)}${fmt(s.p50).padStart(9)}${fmt(s.p99).padStart(9)}${fmt(s.max).padStart(9)}${fmt(loop).padStart(14)}`);
    }
    const b = stats(blocked.map((w) => w.ms));
    say('');
    say(cutoverAt !== undefined && verifyAt !== undefined
      ? `cutover window ${fmt(verifyAt - cutoverAt)} ms (phase:cutover .. phase:verify); writer blocked: max ${fmt(b.max)} ms, p99 ${fmt(b.p99)} ms over ${b.n} writes overlapping it`
      : 'cutover window: not found in the audit log');
    say(swapped ? `swap: lock held ${String(swapped.lockHeldMs)} ms, ${String(swapped.attempts)} attempt(s): ${String(swapped.message)}` : 'swap: no cutover:swapped audit row');
    if (state.errors.length) for (const e of state.errors) say(`write error: ${e}`);
    say(problems.length === 0
      ? `data check: OK (${state.expected.size} ids written, ${state.inserted} inserted; ${Number(t.total)} rows live, ${Number(t.seeded_ok)} untouched seeded rows intact)`
      : `data check: ${problems.length} differences${state.uncertain.size ? ` (${state.uncertain.size} ids uncertain after failed writes, skipped)` : ''}:\n  ${problems.slice(0, 20).join('\n  ')}`);
    if (outcome !== 0) process.exitCode = 1;
  } finally {
    await admin?.end().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    await stack?.stop();
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
