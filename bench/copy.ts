/**
 * `npm run bench`: safeshift's copy and validate phases next to PostgreSQL's own baselines, measured in one run on
 * the same table (BENCH_ROWS rows of the Empathy Ledger demo, default 2,000,000, about 820 MB):
 *   - INSERT INTO target SELECT <the plan's mapping> FROM source, into a fresh target made by the plan's DDL;
 *   - the same projection piped `psql \copy ... TO STDOUT | psql \copy ... FROM STDIN` into a fresh target, in the
 *     format safeshift picks (when psql is on PATH);
 *   - one checksum scan of each side (what validate computes; validate = one scan per side);
 *   - safeshift's copy, build (the secondary indexes it deferred) and validate phases (workflow time, activity
 *     scheduling included), with the plan's parallel lanes (BENCH_PARALLEL overrides).
 * The migration runs on a worker of its own (a separate `safeshift worker` process, as in production), whose peak
 * RSS (VmHWM) is reported. Not a test: it asserts nothing; figures go into issue notes with this command.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { parse, stringify } from 'yaml';
import { inspectPlan } from '../activities/preflight';
import { DEMO_PLAN, seedDemoProfiles } from '../examples/empathy-ledger/seed';
import { checksum } from '../src/checksum';
import { startMigration } from '../src/cli/migrations';
import type { StatusJson } from '../src/cli/render';
import { connect } from '../src/db';
import { attachOrStartDevStack } from '../src/dev/stack';
import { loadPlan } from '../src/plan/load';
import { copyInSql, copyOptions, sourceProjection, targetColumnList } from '../src/projection';
import { qualified } from '../src/sql';

const ROWS = Number(process.env.BENCH_ROWS ?? 2_000_000);
const ROOT = join(__dirname, '..');
const say = (line: string) => process.stdout.write(`${line}\n`);

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = process.hrtime.bigint();
  const result = await fn();
  return [result, Number(process.hrtime.bigint() - t) / 1e9];
}

function memoryMb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function psqlPipe(url: string, out: string, into: string): Promise<void> {
  return new Promise((ok, fail) => {
    const reader = spawn('psql', [url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', `\\copy ${out}`], { stdio: ['ignore', 'pipe', 'inherit'] });
    const writer = spawn('psql', [url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', `\\copy ${into}`], { stdio: ['pipe', 'inherit', 'inherit'] });
    reader.stdout.pipe(writer.stdin);
    let pending = 2;
    const done = (who: string) => (code: number | null) => {
      if (code !== 0) fail(new Error(`psql (${who}) exited ${code}`));
      else if (--pending === 0) ok();
    };
    reader.on('exit', done('read'));
    writer.on('exit', done('write'));
  });
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const stack = await attachOrStartDevStack({ log: () => undefined, worker: false });
  let worker: ChildProcess | undefined;
  try {
    const url = process.env.DATABASE_URL!;
    await seedDemoProfiles(url, ROWS);
    // The demo plan, with BENCH_PARALLEL lanes if given.
    const raw = parse(readFileSync(DEMO_PLAN, 'utf8')) as { copy: Record<string, unknown> };
    if (process.env.BENCH_PARALLEL) raw.copy.parallel = Number(process.env.BENCH_PARALLEL);
    const planFile = join(ROOT, 'examples/empathy-ledger/.bench-plan.yaml');
    writeFileSync(planFile, stringify(raw));
    const { plan } = loadPlan(planFile);

    const client = await connect(url, 'safeshift bench');
    const t: Record<string, number> = {};
    let megabytes: number;
    let format: string;
    let psqlFound = false;
    try {
      await client.query('VACUUM ANALYZE public.profiles');
      const report = await inspectPlan(client, plan, '00000000000000');
      const { spec } = report;
      format = spec.format ?? 'text';
      megabytes = report.sourceBytes / 1024 / 1024;
      const fresh = async () => {
        await client.query(`DROP TABLE IF EXISTS ${qualified(plan.target)}`);
        await client.query(plan.createSql!);
        await client.query('CHECKPOINT');
      };

      await fresh();
      [, t.insertSelect] = await timed(() => client.query(
        `INSERT INTO ${qualified(plan.target)} (${targetColumnList(spec)}) SELECT ${sourceProjection(spec)} FROM ${qualified(plan.source)}`));

      psqlFound = spawnSync('psql', ['--version']).status === 0;
      if (psqlFound) {
        await fresh();
        const out = `(SELECT ${sourceProjection(spec).replace(/\n/g, ' ')} FROM ${qualified(plan.source)}) TO STDOUT${copyOptions(spec)}`;
        [, t.psqlPipe] = await timed(() => psqlPipe(url, out, copyInSql(spec).replace(/^COPY /, '')));
      }
      [, t.hashTarget] = await timed(() => checksum(client, spec, 'target'));
      await client.query(`DROP TABLE ${qualified(plan.target)}`);
      [, t.hashSource] = await timed(() => checksum(client, spec, 'source'));
      await client.query('CHECKPOINT');
    } finally {
      await client.end();
    }

    const taskQueue = `bench-${process.pid}`;
    process.env.SAFESHIFT_TASK_QUEUE = taskQueue;
    worker = spawn(process.execPath, [join(ROOT, 'bin/safeshift'), 'worker'], { cwd: ROOT, env: { ...process.env }, stdio: 'ignore' });
    // Startup (bundling the workflow code) has a peak of its own: sample what the migration itself adds.
    await new Promise((ok) => setTimeout(ok, 15_000));
    const startupPeak = memoryMb(worker.pid!, 'VmHWM');
    const idle = memoryMb(worker.pid!, 'VmRSS');
    let migrationPeak = 0;
    const sampler = setInterval(() => { migrationPeak = Math.max(migrationPeak, memoryMb(worker!.pid!, 'VmRSS')); }, 200);
    let json = '';
    const code = await startMigration(planFile, { autoApprove: true, json: true }, (line) => { if (line.startsWith('{')) json = line; });
    clearInterval(sampler);
    if (code !== 0) throw new Error(`the migration did not reach done (exit ${code})`);
    const rss = memoryMb(worker.pid!, 'VmHWM');
    const status = JSON.parse(json) as StatusJson;
    const copy = (status.phaseDurationsMs.copy ?? 0) / 1000;
    const validate = (status.phaseDurationsMs.validate ?? 0) / 1000;
    const build = (status.phaseDurationsMs.build ?? 0) / 1000;
    const scans = t.hashSource! + t.hashTarget!;

    const line = (label: string, s: number, extra = '') => say(`${label.padEnd(40)} ${s.toFixed(2).padStart(7)} s ${String(Math.round(ROWS / s)).padStart(8)} rows/s${extra}`);
    say(`table: ${ROWS} rows, ${megabytes.toFixed(0)} MB (public.profiles, Empathy Ledger demo, uuid key); node ${process.version}`);
    say(`copy: ${status.copy.format} COPY, ${status.copy.parallel} lane(s), ${status.copy.chunks} chunks (last size ${status.copy.chunkRows} rows)`);
    line('INSERT ... SELECT (same mapping)', t.insertSelect!);
    if (psqlFound) line(`psql \\copy | psql \\copy (${format})`, t.psqlPipe!, `   ratio to INSERT ... SELECT ${(t.psqlPipe! / t.insertSelect!).toFixed(2)}`);
    else say('psql \\copy | psql \\copy                 skipped: psql not on PATH');
    line('safeshift copy phase', copy, `   ratio to INSERT ... SELECT ${(copy / t.insertSelect!).toFixed(2)}`);
    line('safeshift build phase (deferred indexes)', build);
    line('safeshift copy + build', copy + build, `   ratio to INSERT ... SELECT ${((copy + build) / t.insertSelect!).toFixed(2)}`);
    line('checksum scan, source (mapped)', t.hashSource!);
    line('checksum scan, target', t.hashTarget!);
    line('safeshift validate phase', validate, `   ratio to the two scans ${(validate / scans).toFixed(2)}`);
    say(`worker peak RSS (VmHWM)                  ${rss.toFixed(0)} MB   (startup peak ${startupPeak.toFixed(0)} MB, idle ${idle.toFixed(0)} MB, ` +
      `highest sampled during the migration ${migrationPeak.toFixed(0)} MB)`);
  } finally {
    if (worker && worker.exitCode === null) {
      const exited = new Promise((ok) => worker!.once('exit', ok));
      worker.kill('SIGTERM');
      await exited;
    }
    await stack?.stop();
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
