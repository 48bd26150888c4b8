/**
 * Decisions are signed and bound to the plan the workflow runs (issue 14, items 1-3), on the real stack: every
 * refused decision is in the status and the audit log before it is refused; only a correctly signed approval by a
 * listed approver, for the open gate, this run and the plan the workflow hashed itself, opens the gate.
 */
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { connectClient } from '../../src/config';
import { planHashOf, signDecision } from '../../src/identity';
import { devKeysDir, readKeyFile } from '../../src/keys';
import { approve, migrationWorkflowId, pause, planQuery, status } from '../../src/messages';
import { loadPlan } from '../../src/plan/load';
import { atPhase, basePlan, runCli, signedAs, sql, uniqueName, waitFor, writePlan } from '../support/helpers';
import { mkdtempSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { seedProfiles } from '../support/seed';

test('signed, plan-bound decisions: forgeries, self-approval, replays and wrong hashes are refused and audited', async () => {
  const src = uniqueName('decide');
  await seedProfiles(src, 500);
  const { plan } = loadPlan(writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
    create: `CREATE TABLE public.${src}_v2 (LIKE public.${src} INCLUDING ALL)`,
  })));
  const forged = 'f'.repeat(64);
  const client = await connectClient();
  try {
    // Started as an attacker would: with a hash that is not the plan's. The workflow hashes the plan itself.
    const handle = await client.workflow.start('migrationWorkflow', {
      taskQueue: process.env.SAFESHIFT_TASK_QUEUE ?? 'safeshift', workflowId: migrationWorkflowId(plan.name), args: [{ plan, planHash: forged }],
    });
    await waitFor(plan.name, atPhase('awaiting_cutover'));
    const shown = await handle.query(planQuery);
    expect(shown.planHash).toBe(planHashOf(plan));
    expect(shown.planHash).not.toBe(forged);
    expect((await handle.query(status)).planHash).toBe(shown.planHash);
    const showCli = await runCli(['show', plan.name, '--plan']);
    expect(showCli.code).toBe(0);
    expect(showCli.stdout).toContain(`runs plan sha256:${shown.planHash}`);
    expect(showCli.stdout).toContain(`"createSql": "CREATE TABLE public.${src}_v2`);

    const refused = async (args: unknown, type: string) => {
      const err = await handle.executeUpdate(approve, { args: [args as never] }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
      expect((err as WorkflowUpdateFailedError).cause).toMatchObject({ type });
    };
    // Unsigned, as `temporal workflow update execute --name approve --input '{"approver":"bob"}'` sends it.
    await refused({ approver: 'bob', gate: 'cutover' }, 'Unsigned');
    // bob's name, mallory's key.
    const mallory = readKeyFile(join(devKeysDir(), 'mallory.key'));
    const good = await signedAs(handle, 'approve', 'bob', { gate: 'cutover' });
    await refused(signDecision(JSON.parse(good.payload), mallory.privateKey), 'BadSignature');
    // The forged hash the migration was started with; a decision for another migration; for the other gate.
    await refused(await signedAs(handle, 'approve', 'bob', { gate: 'cutover', planHash: forged }), 'PlanMismatch');
    await refused(await signedAs(handle, 'approve', 'bob', { gate: 'cutover', workflowId: 'migration-other' }), 'WrongWorkflow');
    const forDrop = await signedAs(handle, 'approve', 'bob', { gate: 'drop' });
    await refused(forDrop, 'GateNotOpen');
    await refused(forDrop, 'Replayed');
    await refused(await signedAs(handle, 'approve', 'bob', { gate: 'cutover', time: new Date(Date.now() - 11 * 60_000).toISOString() }), 'Expired');

    // Through the CLI: a non-approver, the requester in another letter case, a wrong hash; exit 2 with the reason.
    expect(await runCli(['approve', plan.name, '--as', 'mallory'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/NotAnApprover/) });
    expect(await runCli(['approve', plan.name, '--as', 'CAROL'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/SelfApproval.*CAROL requested/) });
    expect(await runCli(['approve', plan.name, '--as', 'bob', '--plan-hash', forged])).toMatchObject({ code: 2, stderr: expect.stringMatching(/PlanMismatch/) });
    // A signal refused (mallory may not pause): told by the CLI, recorded by the workflow.
    expect(await runCli(['pause', plan.name, '--as', 'mallory'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/NotAnOperator/) });
    await handle.signal(pause, { payload: '{}', signature: 'x' } as never);

    const s = await waitFor(plan.name, (x) => (x.refusedDecisions?.length ?? 0) >= 12);
    expect(s.paused).toBe(false);
    expect(s.gates[0]).toMatchObject({ state: 'open', decisions: [] });
    const types = ['Unsigned', 'BadSignature', 'PlanMismatch', 'WrongWorkflow', 'GateNotOpen', 'Replayed', 'Expired',
      'NotAnApprover', 'SelfApproval', 'PlanMismatch', 'NotAnOperator', 'Unsigned'];
    expect(s.refusedDecisions!.map((r) => r.type)).toEqual(types);
    // A refusal is in the status at once; its audit row follows (a signal's is written after the handler returns).
    let audit: { action: string; actor: string; type: string }[] = [];
    for (let i = 0; i < 40 && audit.length < types.length; i++, await new Promise((r) => setTimeout(r, 250))) {
      audit = await sql<{ action: string; actor: string; type: string }>(
        `SELECT action, actor, details->>'type' AS type FROM safeshift.audit_log WHERE workflow_id = $1 AND action LIKE 'refused:%' ORDER BY seq`,
        [handle.workflowId]);
    }
    expect(audit.map((a) => a.type)).toEqual(types);
    // Only a verified signer is named as the actor; a claim is kept in the details.
    expect(audit.find((a) => a.type === 'BadSignature')).toMatchObject({ actor: 'unverified', action: 'refused:approve' });
    expect(audit.find((a) => a.type === 'SelfApproval')).toMatchObject({ actor: 'CAROL' });

    // The correctly signed approval opens the gate; its audit row carries the workflow's hash. Sent again, it is a replay.
    expect(await handle.executeUpdate(approve, { args: [good] })).toBe('bob approved the cutover gate (1/1)');
    await waitFor(plan.name, atPhase('awaiting_drop'));
    const [approved] = await sql<{ hash: string; actor: string }>(`SELECT actor, details->>'planHash' AS hash FROM safeshift.audit_log WHERE workflow_id = $1 AND action = 'approve:cutover'`, [handle.workflowId]);
    expect(approved).toEqual({ actor: 'bob', hash: shown.planHash });
    await refused(good, 'Replayed');
    expect(await runCli(['rollback', plan.name, '--as', 'carol'])).toMatchObject({ code: 0 });
    await waitFor(plan.name, atPhase('rolled_back'));
  } finally {
    await client.connection.close();
  }
});

test('keys init writes a private key only its owner reads; keys add registers the public key, audited', async () => {
  const dir = join(mkdtempSync(join(process.env.SAFESHIFT_HOME!, 'keys-')), 'keys');
  const init = await runCli(['keys', 'init', '--name', 'Erin', '--json'], { SAFESHIFT_KEYS_DIR: dir });
  expect(init.code).toBe(0);
  const { publicKey, file } = JSON.parse(init.stdout) as { publicKey: string; file: string };
  expect(statSync(file).mode & 0o777).toBe(0o600);
  expect(statSync(dir).mode & 0o777).toBe(0o700);
  expect(await runCli(['keys', 'add', 'Erin', publicKey, '--as', 'admin'])).toMatchObject({ code: 0 });
  expect(await sql(`SELECT name, added_by FROM safeshift.decider_keys WHERE public_key = $1`, [publicKey])).toEqual([{ name: 'erin', added_by: 'admin' }]);
  const audit = await sql<{ actor: string }>(`SELECT actor FROM safeshift.audit_log WHERE action = 'keys:add' AND details->>'publicKey' = $1`, [publicKey]);
  expect(audit).toEqual([{ actor: 'admin' }]);
  expect(await runCli(['keys', 'add', 'erin', 'not-a-key'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/public-key/) });
});
