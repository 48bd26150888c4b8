/**
 * `npm run bench`: the demo migration's copy and validate phases next to PostgreSQL's own baselines, measured in
 * one run on the same table (BENCH_ROWS rows of the Empathy Ledger demo, default 300,000):
 *   - INSERT INTO target SELECT <the plan's mapping> FROM source, into a fresh target made by the plan's DDL;
 *   - one scan of the source computing the same checksum validation computes (validate = one scan per side);
 *   - safeshift's copy and validate phases (workflow time, activity scheduling included).
 * Not a test: it asserts nothing; figures go into issue notes with this command.
 */
import { DefaultLogger, Runtime } from '@temporalio/worker';
import pg from 'pg';
import { inspectPlan } from '../activities/preflight';
import { DEMO_PLAN, seedDemoProfiles } from '../examples/empathy-ledger/seed';
import { checksum } from '../src/checksum';
import { startMigration } from '../src/cli/migrations';
import type { StatusJson } from '../src/cli/render';
import { connect } from '../src/db';
import { attachOrStartDevStack } from '../src/dev/stack';
import { loadPlan } from '../src/plan/load';
import { sourceProjection, targetColumnList } from '../src/projection';
import { qualified } from '../src/sql';

const ROWS = Number(process.env.BENCH_ROWS ?? 300_000);
const say = (line: string) => process.stdout.write(`${line}\n`);

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = process.hrtime.bigint();
  const result = await fn();
  return [result, Number(process.hrtime.bigint() - t) / 1e9];
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const stack = await attachOrStartDevStack({ log: () => undefined });
  try {
    const url = process.env.DATABASE_URL!;
    await seedDemoProfiles(url, ROWS);
    const { plan } = loadPlan(DEMO_PLAN);
    const client = await connect(url, 'safeshift bench');
    let insertSelect: number;
    let hashScan: number;
    let megabytes: number;
    try {
      await client.query('VACUUM ANALYZE public.profiles');
      const report = await inspectPlan(client, plan, '00000000000000');
      megabytes = report.sourceBytes / 1024 / 1024;
      await client.query(plan.createSql!);
      [, insertSelect] = await timed(() => client.query(
        `INSERT INTO ${qualified(plan.target)} (${targetColumnList(report.spec)}) SELECT ${sourceProjection(report.spec)} FROM ${qualified(plan.source)}`));
      await client.query(`DROP TABLE ${qualified(plan.target)}`);
      [, hashScan] = await timed(() => checksum(client, report.spec, 'source'));
      await client.query('CHECKPOINT');
    } finally {
      await client.end();
    }

    let json = '';
    const code = await startMigration(DEMO_PLAN, { autoApprove: true, json: true }, (line) => { if (line.startsWith('{')) json = line; });
    if (code !== 0) throw new Error(`the migration did not reach done (exit ${code})`);
    const status = JSON.parse(json) as StatusJson;
    const copy = (status.phaseDurationsMs.copy ?? 0) / 1000;
    const validate = (status.phaseDurationsMs.validate ?? 0) / 1000;
    const rss = process.resourceUsage().maxRSS / 1024;

    say(`table: ${ROWS} rows, ${megabytes.toFixed(0)} MB (public.profiles, Empathy Ledger demo); node ${process.version}`);
    say(`INSERT ... SELECT (same mapping)   ${insertSelect.toFixed(2)} s  ${Math.round(ROWS / insertSelect)} rows/s`);
    say(`safeshift copy phase               ${copy.toFixed(2)} s  ${Math.round(ROWS / copy)} rows/s   ratio ${(copy / insertSelect).toFixed(2)}`);
    say(`checksum scan of the source        ${hashScan.toFixed(2)} s`);
    say(`safeshift validate phase           ${validate.toFixed(2)} s   ratio to two scans ${(validate / (2 * hashScan)).toFixed(2)}`);
    say(`peak RSS of this process           ${rss.toFixed(0)} MB${stack ? ' (includes the in-process worker)' : ' (worker runs in safeshift dev)'}`);
  } finally {
    await stack?.stop();
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
