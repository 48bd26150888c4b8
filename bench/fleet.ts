/**
 * `npm run bench:fleet`: one template migration over many projects (issue 16, item 5).
 *
 * Starts its own embedded stack (PostgreSQL + Temporal dev server, fresh home, free ports) without a worker, and one
 * `safeshift worker` process on its own task queue (BENCH_WORKERS to run more), so the worker's memory is its own
 * to measure. Creates BENCH_PROJECTS schemas (default 1000) `project_b<i>` with a table `items` of BENCH_ROWS rows
 * (default 1000), then for each parallelism in BENCH_PARALLEL (default "8,32") runs one fleet: a 1-project canary
 * behind a gate (approved at once, signed with a dev key), then every other project in one wave, the template
 * adding a column filled from `{{project.id}}`. The second fleet migrates the tables the first one left (same
 * shape again), so both do the same work.
 *
 * Reports per fleet: wall time (start to result), projects per minute, failures, the parent's history events (its
 * last run, and how many runs: continue-as-new), one child's history events, the worker's peak RSS (VmHWM).
 * Not a test: it asserts nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import pg from 'pg';
import { stringify } from 'yaml';
import { connectClient } from '../src/config';
import { startDevStack } from '../src/dev/stack';
import { prepareFleet } from '../src/fleet/commands';
import { fleetStatus, fleetWorkflowId, type FleetInput, type FleetStatus } from '../src/fleet/spec';
import { signDecision } from '../src/identity';
import { devKeysDir, ensureDevKeys, readKeyFile } from '../src/keys';
import { approve, planQuery } from '../src/messages';

const PROJECTS = Number(process.env.BENCH_PROJECTS ?? 1000);
const ROWS = Number(process.env.BENCH_ROWS ?? 1000);
const PARALLEL = (process.env.BENCH_PARALLEL ?? '8,32').split(',').map(Number);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 1);
const CAN_EVERY = Number(process.env.BENCH_CAN_EVERY ?? 500);
const ROOT = resolve(__dirname, '..');
const say = (line: string) => process.stdout.write(`${line}\n`);

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.on('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      server.close(() => (typeof a === 'object' && a ? ok(a.port) : fail(new Error('no port'))));
    });
  });
}

function vmHwmKb(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

async function seed(url: string): Promise<void> {
  const db = new pg.Client({ connectionString: url, application_name: 'bench fleet seed' });
  await db.connect();
  try {
    await db.query('CREATE TABLE IF NOT EXISTS public.bench_projects (slug text PRIMARY KEY, id int, region text)');
    for (let i = 0; i < PROJECTS; i += 100) {
      const stmts: string[] = [];
      for (let j = i; j < Math.min(PROJECTS, i + 100); j += 1) {
        stmts.push(`CREATE SCHEMA project_b${j}; CREATE TABLE project_b${j}.items (id int PRIMARY KEY, title text, n int);
          INSERT INTO project_b${j}.items SELECT g, md5(g::text), g % 97 FROM generate_series(1, ${ROWS}) g;
          INSERT INTO public.bench_projects VALUES ('b${j}', ${j}, 'r${j % 4}');`);
      }
      await db.query(stmts.join('\n'));
    }
    await db.query('ANALYZE');
  } finally {
    await db.end();
  }
}

async function runFleet(template: string, parallel: number, taskQueue: string, workerPids: number[]): Promise<void> {
  const name = `bench-p${parallel}-${Date.now().toString(36)}`;
  const spec = await prepareFleet(template, {
    name, projects: 'SELECT slug, id::text AS id, region FROM public.bench_projects ORDER BY id', canary: '1', parallel: String(parallel), onError: 'continue',
  });
  const input: FleetInput = { spec, settings: { continueAsNewEvery: CAN_EVERY } };
  const client = await connectClient();
  const id = fleetWorkflowId(name);
  const started = Date.now();
  let peakKb = 0;
  const sampler = setInterval(() => { for (const pid of workerPids) peakKb = Math.max(peakKb, vmHwmKb(pid)); }, 1000);
  try {
    const handle = await client.workflow.start('fleetMigrationWorkflow', { taskQueue, workflowId: id, args: [input] });
    const key = readKeyFile(join(devKeysDir(), 'alice.key'));
    for (const gate of ['canary', spec.waves[1]?.name].filter(Boolean) as string[]) {
      for (;;) {
        const s = await handle.query(fleetStatus).catch(() => undefined);
        if (s?.gates.some((g) => g.name === gate && g.state === 'open')) break;
        await sleep(200);
      }
      const { planHash } = await handle.query(planQuery);
      const { runId } = await handle.describe();
      await handle.executeUpdate(approve, { args: [signDecision({ by: 'alice', workflowId: id, runId, gate, action: 'approve', planHash, reason: 'bench', time: new Date().toISOString() }, key.privateKey)] });
    }
    let last = 0;
    const progress = setInterval(() => {
      void handle.query(fleetStatus).then((s) => {
        if (s.totals.done !== last) say(`  p=${parallel}: ${s.totals.done}/${s.totals.projects} done, ${s.totals.running} running, ${s.totals.failed + s.totals.rolledBack} failed, ${Math.round((Date.now() - started) / 1000)} s`);
        last = s.totals.done;
      }, () => undefined);
    }, 15_000);
    const result = (await handle.result()) as FleetStatus;
    clearInterval(progress);
    const wallMs = Date.now() - started;
    const parent = await handle.describe();
    const child = await client.workflow.getHandle(`${id}.b${Math.floor(PROJECTS / 2)}`).describe();
    say(`fleet p=${parallel}: ${PROJECTS} projects x ${ROWS} rows, ${WORKERS} worker(s)`);
    say(`  wall ${(wallMs / 1000).toFixed(1)} s, ${(PROJECTS / (wallMs / 60_000)).toFixed(1)} projects/min, outcome ${result.outcome?.phase}: ${result.outcome?.reason}`);
    say(`  done ${result.totals.done}, failed ${result.totals.failed}, rolled back ${result.totals.rolledBack}`);
    say(`  parent history: ${parent.historyLength} events in its last run, ${result.continuedAsNew} continue-as-new; one child: ${child.historyLength} events`);
    say(`  slowest: ${result.slowest.map((x) => `${x.slug} ${(x.ms / 1000).toFixed(1)} s`).join(', ')}`);
    say(`  worker peak RSS ${(peakKb / 1024).toFixed(0)} MiB`);
    if (process.env.BENCH_CHILD_PROFILE) say(`  one child's activities (count, total ms, scheduled-to-start wait ms): ${await childProfile(client, `${id}.b${Math.floor(PROJECTS / 2)}`)}`);
  } finally {
    clearInterval(sampler);
    await client.connection.close();
  }
}

/** Where one child's time goes: per activity type, how many, time running, time waiting to be picked up. */
async function childProfile(client: Awaited<ReturnType<typeof connectClient>>, workflowId: string): Promise<string> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const ms = (t: unknown) => { const x = t as { seconds?: { toNumber(): number } | number; nanos?: number }; return Number(typeof x.seconds === 'object' ? x.seconds.toNumber() : x.seconds ?? 0) * 1000 + (x.nanos ?? 0) / 1e6; };
  const sched = new Map<number, { type: string; at: number }>();
  const started = new Map<number, number>();
  const per = new Map<string, { n: number; run: number; wait: number }>();
  for (const e of history.events ?? []) {
    const id = Number(e.eventId);
    const at = ms(e.eventTime);
    if (e.activityTaskScheduledEventAttributes) sched.set(id, { type: e.activityTaskScheduledEventAttributes.activityType?.name ?? '?', at });
    if (e.activityTaskStartedEventAttributes) started.set(Number(e.activityTaskStartedEventAttributes.scheduledEventId), at);
    const done = e.activityTaskCompletedEventAttributes;
    if (done) {
      const s = sched.get(Number(done.scheduledEventId))!;
      const st = started.get(Number(done.scheduledEventId)) ?? s.at;
      const p = per.get(s.type) ?? { n: 0, run: 0, wait: 0 };
      p.n += 1; p.run += at - st; p.wait += st - s.at;
      per.set(s.type, p);
    }
  }
  const evs = history.events ?? [];
  const total = evs.length ? ms(evs[evs.length - 1]!.eventTime) - ms(evs[0]!.eventTime) : 0;
  return `${(total / 1000).toFixed(1)} s in all; ` + [...per.entries()].sort((a, b) => b[1].run - a[1].run)
    .map(([t, p]) => `${t} ${p.n}x ${Math.round(p.run)}/${Math.round(p.wait)}`).join(', ');
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const home = mkdtempSync(join(tmpdir(), 'safeshift-bench-fleet-'));
  process.env.SAFESHIFT_HOME = home;
  const stack = await startDevStack({
    home, worker: false, log: () => undefined, pgPort: await freePort(), temporalPort: await freePort(), uiPort: await freePort(),
  });
  const taskQueue = `bench-fleet-${Date.now().toString(36)}`;
  const workers: ChildProcess[] = [];
  try {
    const url = process.env.DATABASE_URL!;
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await ensureDevKeys(db, ['alice', 'bob', 'carol']);
    await db.end();
    for (let i = 0; i < WORKERS; i += 1) {
      workers.push(spawn(process.execPath, [join(ROOT, 'bin/safeshift'), 'worker'], { cwd: ROOT, env: { ...process.env, SAFESHIFT_TASK_QUEUE: taskQueue }, stdio: 'ignore' }));
    }
    const seeded = Date.now();
    await seed(url);
    say(`seeded ${PROJECTS} schemas x ${ROWS} rows in ${((Date.now() - seeded) / 1000).toFixed(1)} s`);
    const template = join(home, 'fleet-template.yaml');
    writeFileSync(template, stringify({
      version: 1, name: 'bench-fleet', database: 'DATABASE_URL', requestedBy: 'carol',
      source: 'project_{{project.slug}}.items', target: 'project_{{project.slug}}.items_v2',
      create: 'CREATE TABLE project_{{project.slug}}.items_v2 (id int PRIMARY KEY, title text, n int, project_id int NOT NULL)',
      columns: { project_id: '{{project.id}}' },
      backup: { table: false },
      approvals: { cutover: { approvers: ['alice', 'bob'] }, drop: { approvers: ['alice'] } },
    }));
    const checked = Date.now();
    await prepareFleet(template, { name: 'bench-check', projects: 'SELECT slug, id::text AS id FROM public.bench_projects', canary: '1' });
    say(`fleet start's checks (query, ${PROJECTS} plans expanded and checked): ${((Date.now() - checked) / 1000).toFixed(1)} s`);
    for (const p of PARALLEL) await runFleet(template, p, taskQueue, workers.map((w) => w.pid!));
  } finally {
    for (const w of workers) w.kill('SIGTERM');
    await sleep(1000);
    await stack.stop();
    rmSync(home, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
