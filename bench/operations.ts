/**
 * `npm run bench:operations`: nine single-table operations (issue 15's comparison), each through safeshift and
 * against its own baseline in the same run, with a steady writer on the table throughout.
 *
 * Per operation, two fresh tables of BENCH_ROWS rows (default 200,000) with the same shape: one migrated by
 * safeshift (the plan approved by the bench itself, as `start --auto-approve` does), one changed by the baseline
 * (the bare DDL for changes that need no rewrite; CREATE TABLE + INSERT ... SELECT into the new shape for
 * rewrites, as a hand-made copy would, without any swap). A writer (BENCH_WRITERS connections, default 4,
 * BENCH_WRITES_PER_SECOND in total, default 200) writes to the table from BENCH_BEFORE_SECONDS (default 1) before
 * until BENCH_AFTER_SECONDS (default 1) after. Reported: wall time, the writer's latency over the writes that
 * overlapped the operation (p50 / p99 / max: a blocked write is a slow one), the lock held under safeshift's swap
 * with its breakdown (the `lockHeldMs` / `lockSteps` of the audit rows), and a data check (the live table holds
 * exactly what the writer committed and the seeded rows it did not touch).
 *
 * Rename / add / drop column go through the catalog-only path (plan field `alter:`) when this checkout has it,
 * else through the copy path (said in the output). BENCH_OPS=rename,bigint,... runs a subset. Not a test.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import pg from 'pg';
import { startMigration } from '../src/cli/migrations';
import { connectClient, temporalConfig } from '../src/config';
import { attachOrStartDevStack } from '../src/dev/stack';
import { migrationWorkflowId } from '../src/messages';
import { planSchema } from '../src/plan/schema';
import { fmt, newWriterState, nowMs, startWriter, stats, type WriterState } from './writer';

const ROWS = Number(process.env.BENCH_ROWS ?? 200_000);
const WRITERS = Number(process.env.BENCH_WRITERS ?? 4);
const RATE = Number(process.env.BENCH_WRITES_PER_SECOND ?? 200);
const BEFORE_MS = Number(process.env.BENCH_BEFORE_SECONDS ?? 1) * 1000;
const AFTER_MS = Number(process.env.BENCH_AFTER_SECONDS ?? 1) * 1000;
const MIGRATION_TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_SECONDS ?? 300) * 1000;
/** Writer values start here; seeded rows have v = id % 1000, so the two never mix. */
const WRITER_V0 = 1_000_000;

const say = (line: string) => process.stdout.write(`${line}\n`);

/** The source shape: what the writer writes (id, v, note, updated_at) and a column the operations reshape. */
const COLUMNS = 'v int NOT NULL, note text, updated_at timestamptz NOT NULL';

interface Operation {
  slug: string;
  name: string;
  /** rewrite: the baseline copies into a new table; catalog: the baseline is the bare DDL. */
  baseline: 'rewrite' | 'catalog';
  /** The catalog-only path's ALTER, when this operation takes it. */
  alter?: (t: string) => string;
  /** The copy path: the new table's DDL and its column mapping. */
  create: (t: string) => string;
  columns?: Record<string, string>;
  /** The baseline's statements on table `t` (rewrites: into `t`_new). */
  bare: (t: string) => string[];
  /** True when the live table (after either) has the new shape. */
  shape: (t: string) => string;
}

const col = (t: string, c: string) => `EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '${t}'::regclass AND attname = '${c}' AND NOT attisdropped)`;

const OPERATIONS: Operation[] = [
  {
    slug: 'rename', name: 'rename column', baseline: 'catalog',
    alter: (t) => `ALTER TABLE ${t} RENAME COLUMN full_name TO display_name`,
    create: (t) => `CREATE TABLE ${t}_v2 (id int PRIMARY KEY, ${COLUMNS}, display_name text)`,
    columns: { display_name: 'full_name' },
    bare: (t) => [`ALTER TABLE ${t} RENAME COLUMN full_name TO display_name`],
    shape: (t) => `${col(t, 'display_name')} AND NOT ${col(t, 'full_name')}`,
  },
  {
    slug: 'add', name: 'add NOT NULL column with default', baseline: 'catalog',
    alter: (t) => `ALTER TABLE ${t} ADD COLUMN status text NOT NULL DEFAULT 'new'`,
    create: (t) => `CREATE TABLE ${t}_v2 (id int PRIMARY KEY, ${COLUMNS}, full_name text, status text NOT NULL DEFAULT 'new')`,
    columns: { status: `'new'` },
    bare: (t) => [`ALTER TABLE ${t} ADD COLUMN status text NOT NULL DEFAULT 'new'`],
    shape: (t) => col(t, 'status'),
  },
  {
    slug: 'drop', name: 'drop column', baseline: 'catalog',
    alter: (t) => `ALTER TABLE ${t} DROP COLUMN full_name`,
    create: (t) => `CREATE TABLE ${t}_v2 (id int PRIMARY KEY, ${COLUMNS})`,
    bare: (t) => [`ALTER TABLE ${t} DROP COLUMN full_name`],
    shape: (t) => `NOT ${col(t, 'full_name')}`,
  },
  {
    slug: 'bigint', name: 'int -> bigint key', baseline: 'rewrite',
    create: (t) => `CREATE TABLE ${t}_v2 (id bigint PRIMARY KEY, ${COLUMNS}, full_name text)`,
    bare: (t) => [`CREATE TABLE ${t}_new (id bigint PRIMARY KEY, ${COLUMNS}, full_name text)`, `INSERT INTO ${t}_new SELECT id, v, note, updated_at, full_name FROM ${t}`],
    shape: (t) => `(SELECT atttypid = 'bigint'::regtype FROM pg_attribute WHERE attrelid = '${t}'::regclass AND attname = 'id')`,
  },
  {
    slug: 'notnull', name: 'set NOT NULL', baseline: 'catalog',
    create: (t) => `CREATE TABLE ${t}_v2 (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL, updated_at timestamptz NOT NULL, full_name text)`,
    bare: (t) => [`ALTER TABLE ${t} ALTER COLUMN note SET NOT NULL`],
    shape: (t) => `(SELECT attnotnull FROM pg_attribute WHERE attrelid = '${t}'::regclass AND attname = 'note')`,
  },
  {
    slug: 'split', name: 'split a column', baseline: 'rewrite',
    create: (t) => `CREATE TABLE ${t}_v2 (id int PRIMARY KEY, ${COLUMNS}, first_name text, last_name text)`,
    columns: { first_name: `split_part(full_name, ' ', 1)`, last_name: `split_part(full_name, ' ', 2)` },
    bare: (t) => [`CREATE TABLE ${t}_new (id int PRIMARY KEY, ${COLUMNS}, first_name text, last_name text)`,
      `INSERT INTO ${t}_new SELECT id, v, note, updated_at, split_part(full_name, ' ', 1), split_part(full_name, ' ', 2) FROM ${t}`],
    shape: (t) => `${col(t, 'first_name')} AND ${col(t, 'last_name')}`,
  },
  {
    slug: 'check', name: 'add CHECK', baseline: 'catalog',
    create: (t) => `CREATE TABLE ${t}_v2 (id int PRIMARY KEY, ${COLUMNS}, full_name text, CONSTRAINT v_not_negative CHECK (v >= 0))`,
    bare: (t) => [`ALTER TABLE ${t} ADD CONSTRAINT v_not_negative CHECK (v >= 0)`],
    shape: (t) => `EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = '${t}'::regclass AND contype = 'c')`,
  },
  {
    slug: 'unique', name: 'add UNIQUE', baseline: 'catalog',
    create: (t) => `CREATE TABLE ${t}_v2 (id int PRIMARY KEY, ${COLUMNS}, full_name text, UNIQUE (note))`,
    bare: (t) => [`ALTER TABLE ${t} ADD UNIQUE (note)`],
    shape: (t) => `EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = '${t}'::regclass AND contype = 'u')`,
  },
  {
    slug: 'index', name: 'create index', baseline: 'catalog',
    create: (t) => `CREATE TABLE ${t}_v2 (id int PRIMARY KEY, ${COLUMNS}, full_name text);\nCREATE INDEX ON ${t}_v2 (updated_at)`,
    bare: (t) => [`CREATE INDEX ON ${t} (updated_at)`],
    shape: (t) => `EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = '${t}'::regclass AND a.attname = 'updated_at')`,
  },
];

/** This checkout has the catalog-only path: a plan with `alter:` and no target validates. */
function hasFastPath(): boolean {
  return planSchema.safeParse({
    version: 1, name: 'probe', database: 'DATABASE_URL', requestedBy: 'carol', source: 'public.t', alter: 'ALTER TABLE public.t RENAME COLUMN a TO b',
    approvals: { cutover: { approvers: ['alice'], required: 1 }, drop: { approvers: ['alice'], required: 1 } },
  }).success;
}

interface Run {
  ok: boolean;
  wallMs: number;
  writer: { p50: number; p99: number; max: number; n: number };
  lockHeldMs?: number;
  lockWaitMs?: number;
  /** The writes that overlapped the cutover (phase:cutover .. phase:verify): the writers blocked by the swap. */
  atCutover?: { p50: number; p99: number; max: number; n: number };
  breakdown?: string;
  path: string;
  data: string;
  note?: string;
}

async function seed(admin: pg.Client, table: string): Promise<void> {
  await admin.query(`CREATE TABLE ${table} (id int PRIMARY KEY, ${COLUMNS}, full_name text)`);
  await admin.query(`INSERT INTO ${table} SELECT g, g % 1000, 'seed ' || md5(g::text), now() - g * interval '1 second', 'first' || g || ' last' || g
                       FROM generate_series(1, $1::int) g`, [ROWS]);
  await admin.query(`VACUUM ANALYZE ${table}`);
}

/** The live table holds exactly what the writer committed, and the seeded rows it did not touch. */
async function dataCheck(admin: pg.Client, table: string, state: WriterState): Promise<string> {
  const live = await admin.query<{ id: string; v: number }>(`SELECT id, v FROM ${table} WHERE v >= $1`, [WRITER_V0]);
  const seen = new Map(live.rows.map((r) => [Number(r.id), r.v]));
  let bad = 0;
  for (const [id, want] of state.expected) if (!state.uncertain.has(id) && seen.get(id) !== want) bad++;
  for (const id of seen.keys()) if (!state.expected.has(id) && !state.uncertain.has(id)) bad++;
  const [t] = (await admin.query<{ total: string; seeded_ok: string }>(
    `SELECT count(*) AS total, count(*) FILTER (WHERE v < $1 AND id <= $2 AND v = id % 1000) AS seeded_ok FROM ${table}`, [WRITER_V0, ROWS])).rows;
  const touched = [...state.expected.keys()].filter((id) => id <= ROWS).length;
  if (Number(t!.total) !== ROWS + state.inserted) bad++;
  if (Number(t!.seeded_ok) !== ROWS - touched) bad++;
  return bad === 0 && state.uncertain.size === 0 ? 'OK' : `${bad} differences${state.uncertain.size ? `, ${state.uncertain.size} uncertain` : ''}`;
}

/** The lock figures the audit rows of a migration carry (the swap's, or each in-place step's). */
async function lockFigures(admin: pg.Client, workflowId: string): Promise<Pick<Run, 'lockHeldMs' | 'lockWaitMs' | 'breakdown'>> {
  const { rows } = await admin.query<{ action: string; details: { lockHeldMs?: number; lockWaitMs?: number; lockSteps?: { step: string; ms: number; statements: number; roundTrips?: number }[] } }>(
    `SELECT action, details FROM safeshift.audit_log WHERE workflow_id = $1 AND details ? 'lockHeldMs' ORDER BY seq`, [workflowId]);
  if (!rows.length) return {};
  const steps = rows.flatMap((r) => r.details.lockSteps ?? []).filter((s) => s.step !== 'lock');
  return {
    lockHeldMs: rows.reduce((a, r) => a + (r.details.lockHeldMs ?? 0), 0),
    lockWaitMs: rows.reduce((a, r) => a + (r.details.lockWaitMs ?? 0), 0),
    breakdown: steps.length ? steps.map((s) => `${s.step} ${s.ms}${s.statements ? `/${s.statements}${s.roundTrips !== undefined && s.roundTrips !== s.statements ? `:${s.roundTrips}` : ''}` : ''}`).join(', ') : rows.map((r) => r.action).join(', '),
  };
}

/** When the swap ran, from the audit log (the copy path only). */
async function cutoverWindow(admin: pg.Client, workflowId: string): Promise<[number, number] | undefined> {
  const { rows } = await admin.query<{ action: string; at: number }>(
    `SELECT action, extract(epoch FROM at)::float8 * 1000 AS at FROM safeshift.audit_log WHERE workflow_id = $1 AND action IN ('phase:cutover', 'phase:verify') ORDER BY seq`, [workflowId]);
  const from = rows.find((r) => r.action === 'phase:cutover')?.at;
  const to = rows.find((r) => r.action === 'phase:verify')?.at;
  return from !== undefined && to !== undefined ? [from, to] : undefined;
}

async function runOne(url: string, admin: pg.Client, op: Operation, how: 'safeshift' | 'baseline', fastPath: boolean, n: number, dir: string): Promise<Run> {
  const name = `bench_ops_${n}_${op.slug}${how === 'baseline' ? '_base' : ''}`;
  const table = `public.${name}`;
  await seed(admin, table);
  const state = newWriterState();
  let stopAt = Infinity;
  const deadline = nowMs() + MIGRATION_TIMEOUT_MS + 60_000;
  const writing = startWriter({ url, table, rows: ROWS, writers: WRITERS, rate: RATE }, state, WRITER_V0, () => nowMs() >= stopAt, deadline);
  await sleep(BEFORE_MS);
  const inPlace = how === 'safeshift' && fastPath && op.alter !== undefined;
  const planName = `bench-ops-${n}-${op.slug}`;
  const workflowId = migrationWorkflowId(planName);
  let ok = true;
  let note: string | undefined;
  const t0 = nowMs();
  if (how === 'baseline') {
    for (const statement of op.bare(table)) await admin.query(statement);
  } else {
    const planFile = join(dir, `${op.slug}.json`);
    writeFileSync(planFile, JSON.stringify({
      version: 1, name: planName, database: 'DATABASE_URL', requestedBy: 'carol', source: table,
      ...(inPlace ? { alter: op.alter!(table) } : { target: `${table}_v2`, create: op.create(table), ...(op.columns ? { columns: op.columns } : {}), copy: { chunkRows: 50000 } }),
      backup: { table: false },
      cutover: { lockTimeoutMs: 2000, attempts: 10 },
      approvals: { cutover: { approvers: ['alice'], required: 1 }, drop: { approvers: ['alice'], required: 1, notBefore: '0s' } },
    }));
    const printed: string[] = [];
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((done) => { timer = setTimeout(() => done('timeout'), MIGRATION_TIMEOUT_MS); });
    const outcome = await Promise.race([
      startMigration(planFile, { autoApprove: true, json: true }, (line) => printed.push(line)).catch((err: unknown) => { printed.push(String(err)); return 1; }),
      timeout,
    ]).finally(() => clearTimeout(timer));
    if (outcome === 'timeout') {
      const client = await connectClient(temporalConfig());
      await client.workflow.getHandle(workflowId).terminate('bench operations: timeout').catch(() => undefined);
      await client.connection.close();
    }
    if (outcome !== 0) {
      ok = false;
      const last = printed.filter((l) => !l.startsWith('{')).slice(-1)[0] ?? '';
      const json = printed.find((l) => l.startsWith('{'));
      const reason = json ? (JSON.parse(json) as { outcome?: { reason?: string } }).outcome?.reason : undefined;
      note = outcome === 'timeout' ? 'TIMED OUT' : (reason ?? last).slice(0, 300);
    }
  }
  const t1 = nowMs();
  stopAt = nowMs() + AFTER_MS;
  await writing;
  const overlapping = state.writes.filter((w) => w.start < t1 && w.start + w.ms > t0).map((w) => w.ms);
  const s = stats(overlapping);
  // A rewrite's baseline leaves the table as it was and fills a new one: the new one has the shape.
  const reshaped = how === 'baseline' && op.baseline === 'rewrite' ? `${table}_new` : table;
  const [shape] = (await admin.query<{ ok: boolean }>(`SELECT (${op.shape(reshaped)}) AS ok`)).rows;
  const data = await dataCheck(admin, table, state);
  const locks = how === 'safeshift' ? await lockFigures(admin, workflowId) : {};
  const window = how === 'safeshift' ? await cutoverWindow(admin, workflowId) : undefined;
  const atCutover = window ? stats(state.writes.filter((w) => w.start < window[1] && w.start + w.ms > window[0]).map((w) => w.ms)) : undefined;
  if (!process.env.BENCH_KEEP) await admin.query(`DROP TABLE IF EXISTS ${table}, ${table}_v2, ${table}_new`);
  return {
    ok: ok && Boolean(shape?.ok), wallMs: t1 - t0, writer: s, ...locks, atCutover, data,
    path: how === 'baseline' ? (op.baseline === 'rewrite' ? 'INSERT ... SELECT' : 'bare DDL') : inPlace ? 'in place' : 'copy',
    note: note ?? (shape?.ok ? undefined : 'the table does not have the new shape'),
  };
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const stack = await attachOrStartDevStack({ log: () => undefined });
  const dir = mkdtempSync(join(tmpdir(), 'safeshift-bench-operations-'));
  const url = process.env.DATABASE_URL!;
  const admin = new pg.Client({ connectionString: url, application_name: 'bench operations' });
  try {
    await admin.connect();
    const only = process.env.BENCH_OPS?.split(',').map((s) => s.trim());
    const ops = OPERATIONS.filter((o) => !only || only.includes(o.slug));
    const fastPath = hasFastPath();
    const n = Math.floor(Date.now() / 1000);
    say(`${ops.length} operations on ${ROWS} rows each; writer ${WRITERS} connections, ${RATE} writes/s; node ${process.version}; ` +
      `catalog-only path (alter:) ${fastPath ? 'available: rename / add / drop column go in place' : 'NOT in this checkout: rename / add / drop column go through the copy path'}`);
    const results: [Operation, Run, Run][] = [];
    for (const op of ops) {
      const ours = await runOne(url, admin, op, 'safeshift', fastPath, n, dir);
      const base = await runOne(url, admin, op, 'baseline', fastPath, n, dir);
      results.push([op, ours, base]);
      say(`  ${op.name}: safeshift ${(ours.wallMs / 1000).toFixed(1)} s (${ours.path}${ours.ok ? '' : `, FAILED: ${ours.note}`}), baseline ${(base.wallMs / 1000).toFixed(3)} s`);
    }
    say('');
    const head = ['operation', 'path', 'safeshift s', 'baseline s', 'ratio', 'writer p50/p99/max ms', 'at cutover p50/p99/max ms', 'baseline writer p50/p99/max ms', 'lock held ms', 'lock wait ms', 'data'];
    say(`| ${head.join(' | ')} |`);
    say(`|${head.map(() => '---').join('|')}|`);
    for (const [op, ours, base] of results) {
      const w = (r: Run) => `${fmt(r.writer.p50)} / ${fmt(r.writer.p99)} / ${fmt(r.writer.max)}`;
      const c = (r: Run) => (r.atCutover ? `${fmt(r.atCutover.p50)} / ${fmt(r.atCutover.p99)} / ${fmt(r.atCutover.max)}` : '-');
      say(`| ${op.name} | ${ours.path} vs ${base.path} | ${ours.ok ? (ours.wallMs / 1000).toFixed(1) : 'FAILED'} | ${(base.wallMs / 1000).toFixed(3)} | ` +
        `${ours.ok ? `${(ours.wallMs / base.wallMs).toFixed(0)}x` : '-'} | ${w(ours)} | ${c(ours)} | ${w(base)} | ${ours.lockHeldMs ?? '-'} | ${ours.lockWaitMs ?? '-'} | ${ours.data} / ${base.data} |`);
    }
    say('');
    say('lock held under safeshift, by step (ms/statements[:round trips]; `lock` wait left out):');
    for (const [op, ours] of results) say(`  ${op.name}: ${ours.breakdown ?? '-'}${ours.note ? ` [${ours.note}]` : ''}`);
    const held = results.map(([, r]) => r.lockHeldMs).filter((x): x is number => x !== undefined);
    const blocked = results.map(([, r]) => r.writer.max).filter((x) => !Number.isNaN(x));
    const atCutover = results.map(([, r]) => r.atCutover?.max).filter((x): x is number => x !== undefined && !Number.isNaN(x));
    say('');
    say(`over the ${results.length} safeshift runs: lock held max ${held.length ? Math.max(...held) : '-'} ms; writer latency max ${blocked.length ? fmt(Math.max(...blocked)) : '-'} ms` +
      ` over the whole operation, ${atCutover.length ? fmt(Math.max(...atCutover)) : '-'} ms at the cutovers`);
    if (results.some(([, r, b]) => !r.ok || !b.ok || r.data !== 'OK' || b.data !== 'OK')) process.exitCode = 1;
  } finally {
    await admin.end().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    await stack?.stop();
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
