/**
 * `npm run demo`: the Empathy Ledger case end to end on the embedded stack. Seeds a legacy-shaped
 * `public.profiles` (300,000 rows by default, DEMO_ROWS to change), runs examples/empathy-ledger/profiles-v2.yaml,
 * approves each gate as a named approver, and prints the Temporal UI link and a summary.
 *
 * Uses a running `safeshift dev` if there is one (its dev.env answers), else starts the stack itself; then, in a
 * terminal, it keeps the stack up so the run can be browsed in the UI until Ctrl-C.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SingleBar } from 'cli-progress';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { DEMO_PLAN, seedDemoProfiles } from '../examples/empathy-ledger/seed';
import { connectClient, devEnvPath, temporalConfig, workflowUiUrl } from '../src/config';
import { renderStatus } from '../src/cli/render';
import { attachOrStartDevStack } from '../src/dev/stack';
import { approve, FINAL_PHASES, MIGRATION_PHASE, MIGRATION_TABLE, migrationWorkflowId, status, type MigrationStatus } from '../src/messages';
import { loadPlan } from '../src/plan/load';
import { withClient } from '../src/db';
import { planHashOf, signDecision } from '../src/identity';
import { devKeysDir, ensureDevKeys, readKeyFile } from '../src/keys';

const ROWS = Number(process.env.DEMO_ROWS ?? 300_000);
const GATE_PAUSE_MS = Number(process.env.DEMO_GATE_PAUSE_SECONDS ?? 3) * 1000;
const say = (line: string) => process.stdout.write(`${line}\n`);

async function main(): Promise<void> {
  const began = Date.now();
  Runtime.install({ logger: new DefaultLogger('WARN') });
  say('starting the embedded stack (PostgreSQL, Temporal dev server with UI, worker), or using a running one ...');
  const stack = await attachOrStartDevStack({ log: () => undefined });
  if (!stack) say(`  using the running stack (${devEnvPath()})`);
  const config = temporalConfig();
  try {
    say(`seeding public.profiles with ${ROWS} legacy-shaped rows ...`);
    const seeded = Date.now();
    await seedDemoProfiles(process.env.DATABASE_URL!, ROWS);
    say(`  seeded in ${((Date.now() - seeded) / 1000).toFixed(1)} s`);

    const { plan } = loadPlan(DEMO_PLAN);
    const hash = planHashOf(plan);
    // Decisions are signed: the demo's approvers get dev keys (SAFESHIFT_HOME/dev-keys), registered before the
    // start, because the workflow fixes the keys it verifies against when it starts.
    const approvers = [...new Set([...plan.approvals.cutover.approvers, ...plan.approvals.drop.approvers])];
    await withClient(process.env.DATABASE_URL!, (db) => ensureDevKeys(db, approvers), 'safeshift demo');
    const alice = readKeyFile(join(devKeysDir(), 'alice.key'));
    const workflowId = migrationWorkflowId(plan.name);
    const client = await connectClient(config);
    const handle = await client.workflow.start('migrationWorkflow', {
      taskQueue: config.taskQueue,
      workflowId,
      workflowIdConflictPolicy: 'FAIL',
      args: [{ plan, planHash: hash }],
      typedSearchAttributes: [{ key: MIGRATION_PHASE, value: 'preflight' }, { key: MIGRATION_TABLE, value: 'public.profiles' }],
      staticSummary: `safeshift ${plan.name}: public.profiles -> public.profiles_v2 (demo)`,
      staticDetails: `Empathy Ledger demo: ${ROWS} profiles reshaped for the application; approvals by alice.`,
    });
    const uiUrl = workflowUiUrl(config, workflowId);
    say(`started ${workflowId}`);
    if (uiUrl) say(`watch it: ${uiUrl}`);

    const bar = new SingleBar({ format: 'copy [{bar}] {percentage}% | {value}/{total} rows | {rate} rows/s', hideCursor: true });
    let barStarted = false;
    const approved = new Set<string>();
    let s: MigrationStatus;
    for (;;) {
      s = await handle.query(status);
      if (s.phase === 'copy' || (barStarted && s.copy.rowsCopied)) {
        if (!barStarted) { bar.start(Math.max(s.copy.rowsTotal, 1), 0, { rate: 0 }); barStarted = true; }
        bar.setTotal(Math.max(s.copy.rowsTotal, s.copy.rowsCopied, 1));
        bar.update(s.copy.rowsCopied, { rate: s.copy.rowsPerSecond });
      }
      if (barStarted && s.phase !== 'copy') { bar.stop(); barStarted = false; }
      const open = s.gates.find((g) => g.state === 'open');
      if (open && !approved.has(open.name)) {
        approved.add(open.name);
        if (open.name === 'cutover') say(`validation: ${s.validation?.message}`);
        say(`gate ${open.name} is open (approvers ${open.approvers.join(', ')}); approving as alice in ${GATE_PAUSE_MS / 1000} s ...`);
        await sleep(GATE_PAUSE_MS);
        const signed = signDecision({
          by: 'alice', workflowId, runId: handle.firstExecutionRunId, gate: open.name, action: 'approve', planHash: s.planHash,
          reason: 'demo', time: new Date().toISOString(),
        }, alice.privateKey);
        say(`  ${await handle.executeUpdate(approve, { args: [signed] })}`);
      }
      if (FINAL_PHASES.includes(s.phase)) break;
      await sleep(200);
    }
    await handle.result().catch(() => undefined);
    s = await handle.query(status);
    await client.connection.close();

    say('');
    say(renderStatus(workflowId, s, uiUrl));
    const copySeconds = (s.phaseDurationsMs.copy ?? 0) / 1000;
    say('');
    say(`demo wall time ${((Date.now() - began) / 1000).toFixed(1)} s; copy phase ${copySeconds.toFixed(1)} s = ` +
      `${copySeconds > 0 ? Math.round(s.copy.rowsCopied / copySeconds) : 0} rows/s`);
    if (s.phase !== 'done') {
      process.exitCode = 1;
      return;
    }
    if (stack && process.stdin.isTTY && !process.env.CI) {
      say(`the stack stays up so you can browse the run: ${config.uiUrl ?? ''}  (Ctrl-C stops it)`);
      await new Promise<void>((ok) => {
        process.once('SIGINT', ok);
        process.once('SIGTERM', ok);
      });
    }
  } finally {
    await stack?.stop();
  }
}

main().catch((err) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
