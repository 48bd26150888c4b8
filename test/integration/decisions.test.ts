/**
 * Decisions are signed and bound to the plan the workflow runs (issue 14, items 1-3), on the real stack: every
 * refused decision is in the status and the audit log before it is refused; only a correctly signed approval by a
 * listed approver, for the open gate, this run and the plan the workflow hashed itself, opens the gate.
 */
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { connectClient } from '../../src/config';
import { DEV_ADMIN } from '../../src/admin-keys';
import { generateKeyPair, keyFingerprint, planHashOf, signDecision, signKeyStatement } from '../../src/identity';
import { devKeysDir, readKeyFile } from '../../src/keys';
import { approve, migrationWorkflowId, pause, planQuery, reject, status } from '../../src/messages';
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
  // The registry attack: mallory's key INSERTed for bob straight into the table (no `keys add`, no audit row).
  const mallory = readKeyFile(join(devKeysDir(), 'mallory.key'));
  await sql(`INSERT INTO safeshift.decider_keys (name, public_key, added_by) VALUES ('bob', $1, 'admin') ON CONFLICT DO NOTHING`, [mallory.publicKey]);
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
    // bob's name, mallory's key (the one INSERTed for bob, which counts for nothing).
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
    // The key nobody signed was reported when the migration read its keys: bob and a fingerprint, never the key.
    const ignored = await sql<{ details: Record<string, string>; event_key: string }>(`SELECT details, event_key FROM safeshift.audit_log WHERE workflow_id = $1 AND action = 'keys:ignored'`, [handle.workflowId]);
    expect(ignored.map((r) => r.details)).toEqual([{ name: 'bob', fingerprint: keyFingerprint(mallory.publicKey), reason: expect.stringMatching(/not signed by an administrator/) }]);
    expect(JSON.stringify(ignored)).not.toContain(mallory.publicKey);
    // Written by the workflow, in its own numbered record (`<run>/<n>`), so the migration's audit stays one sequence.
    expect(ignored.map((r) => r.event_key)).toEqual([expect.stringMatching(/^[0-9a-f-]+\/\d+$/)]);

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
  // Only an administrator with a key signs a registration: `--as admin` is no longer a free-text claim.
  expect(await runCli(['keys', 'add', 'Erin', publicKey, '--as', 'admin'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/--as admin: no key for admin/) });
  expect(await runCli(['keys', 'add', 'Erin', publicKey, '--as', DEV_ADMIN])).toMatchObject({ code: 0 });
  expect(await sql(`SELECT name, added_by FROM safeshift.decider_keys WHERE public_key = $1`, [publicKey])).toEqual([{ name: 'erin', added_by: DEV_ADMIN }]);
  const audit = await sql<{ actor: string }>(`SELECT actor FROM safeshift.audit_log WHERE action = 'keys:add' AND details->>'publicKey' = $1`, [publicKey]);
  expect(audit).toEqual([{ actor: DEV_ADMIN }]);
  const listed = JSON.parse((await runCli(['keys', 'list', '--json'])).stdout) as { publicKey: string; trusted?: boolean }[];
  expect(listed.find((k) => k.publicKey === publicKey)).toMatchObject({ trusted: true });
  expect(await runCli(['keys', 'add', 'erin', 'not-a-key', '--as', DEV_ADMIN])).toMatchObject({ code: 2, stderr: expect.stringMatching(/public-key/) });
});

test('keys add with no audit key configured writes nothing: the key commits only with its audit row', async () => {
  const key = generateKeyPair();
  const bare = mkdtempSync(join(process.env.SAFESHIFT_HOME!, 'no-audit-'));
  const r = await runCli(['keys', 'add', 'dave', key.publicKey, '--as', DEV_ADMIN],
    { SAFESHIFT_HOME: bare, SAFESHIFT_AUDIT_KEY: '', SAFESHIFT_AUDIT_KEY_FILE: '', SAFESHIFT_KEYS_DIR: devKeysDir() });
  expect(r).toMatchObject({ code: 2, stderr: expect.stringMatching(/no audit key/) });
  expect(await sql(`SELECT name FROM safeshift.decider_keys WHERE public_key = $1`, [key.publicKey])).toEqual([]);
});

test('only keys an administrator signed count: a non-administrator\'s registration is ignored, a revoked key is refused from the next migration on', async () => {
  const dir = join(mkdtempSync(join(process.env.SAFESHIFT_HOME!, 'keys-')), 'keys');
  const grace = JSON.parse((await runCli(['keys', 'init', '--name', 'grace', '--json'], { SAFESHIFT_KEYS_DIR: dir })).stdout) as { publicKey: string; file: string };
  const graceKey = readKeyFile(grace.file).privateKey;
  const mallory = readKeyFile(join(devKeysDir(), 'mallory.key'));
  const eve = generateKeyPair();
  // mallory is no administrator: the CLI refuses to sign a registration as one, and writes nothing.
  expect(await runCli(['keys', 'add', 'frank', eve.publicKey, '--as', 'mallory'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/--as mallory: not an administrator/) });
  expect(await sql(`SELECT name FROM safeshift.decider_keys WHERE public_key = $1`, [eve.publicKey])).toEqual([]);
  // Around the CLI: a registration of eve's key for frank that mallory signed herself, written into the table.
  const byMallory = signKeyStatement({ action: 'keys:add', name: 'frank', publicKey: eve.publicKey, admin: 'mallory', time: new Date().toISOString() }, mallory.privateKey);
  await sql(`INSERT INTO safeshift.decider_keys (name, public_key, added_by, registration, signature) VALUES ('frank', $1, 'mallory', $2, $3)`,
    [eve.publicKey, byMallory.statement, byMallory.signature]);
  expect(await runCli(['keys', 'add', 'grace', grace.publicKey, '--as', DEV_ADMIN])).toMatchObject({ code: 0 });

  const client = await connectClient();
  try {
    // Two migrations whose cutover grace or frank approves: the first reads its keys before grace's is revoked, the second after.
    const start = async (suffix: string) => {
      const src = uniqueName(`registry_${suffix}`);
      await seedProfiles(src, 20);
      const { plan } = loadPlan(writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
        approvals: { cutover: { approvers: ['grace', 'frank'], required: 1 }, drop: { approvers: ['alice'], required: 1 } },
      })));
      const handle = await client.workflow.start('migrationWorkflow', {
        taskQueue: process.env.SAFESHIFT_TASK_QUEUE ?? 'safeshift', workflowId: migrationWorkflowId(plan.name), args: [{ plan, planHash: planHashOf(plan) }],
      });
      await waitFor(plan.name, atPhase('awaiting_cutover'));
      return { plan, handle };
    };
    const before = await start('a');
    const revoke = await runCli(['keys', 'revoke', 'grace', keyFingerprint(grace.publicKey), '--as', DEV_ADMIN]);
    expect(revoke).toMatchObject({ code: 0, stdout: expect.stringMatching(/revoked/) });
    const after = await start('b');

    const refused = async (h: typeof before.handle, args: unknown, type: string) => {
      const err = await h.executeUpdate(approve, { args: [args as never] }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
      expect((err as WorkflowUpdateFailedError).cause).toMatchObject({ type });
    };
    // frank's only key was registered by a non-administrator: he has no key here.
    await refused(before.handle, await signedAs(before.handle, 'approve', 'frank', { gate: 'cutover' }, eve.privateKey), 'UnknownSigner');
    // grace's key was revoked before the second migration read its keys; the first read them before, and keeps them.
    await refused(after.handle, await signedAs(after.handle, 'approve', 'grace', { gate: 'cutover' }, graceKey), 'UnknownSigner');
    expect(await before.handle.executeUpdate(reject, { args: [await signedAs(before.handle, 'reject', 'grace', { gate: 'cutover' }, graceKey)] }))
      .toBe('grace rejected the cutover gate; rolling back');

    const refusals = await sql<{ workflow_id: string; type: string; claimed: string }>(
      `SELECT workflow_id, details->>'type' AS type, details->>'claimedBy' AS claimed FROM safeshift.audit_log
        WHERE workflow_id = ANY($1::text[]) AND action = 'refused:approve' ORDER BY seq`, [[before.handle.workflowId, after.handle.workflowId]]);
    expect(refusals).toEqual([
      { workflow_id: before.handle.workflowId, type: 'UnknownSigner', claimed: 'frank' },
      { workflow_id: after.handle.workflowId, type: 'UnknownSigner', claimed: 'grace' }]);
    const ignored = await sql<{ details: Record<string, string> }>(`SELECT details FROM safeshift.audit_log WHERE workflow_id = $1 AND action = 'keys:ignored'`, [before.handle.workflowId]);
    expect(ignored.map((r) => r.details)).toEqual([{ name: 'frank', fingerprint: keyFingerprint(eve.publicKey), reason: expect.stringMatching(/signed by mallory, who is not an administrator/) }]);
    expect(await sql(`SELECT actor, details->>'fingerprint' AS fingerprint FROM safeshift.audit_log WHERE action = 'keys:revoke'`))
      .toEqual([{ actor: DEV_ADMIN, fingerprint: keyFingerprint(grace.publicKey) }]);
    // A cleared revocation does not bring the key back: the audit log still has it. Nor does registering it again.
    await sql(`UPDATE safeshift.decider_keys SET revoked_at = NULL WHERE public_key = $1`, [grace.publicKey]);
    expect(await runCli(['keys', 'add', 'grace', grace.publicKey, '--as', DEV_ADMIN])).toMatchObject({ code: 2, stderr: expect.stringMatching(/was revoked/) });
    const listed = JSON.parse((await runCli(['keys', 'list', '--json'])).stdout) as { publicKey: string; revoked: boolean; trusted?: boolean }[];
    expect(listed.find((k) => k.publicKey === grace.publicKey)).toMatchObject({ revoked: true });
    expect(listed.find((k) => k.publicKey === eve.publicKey)).toMatchObject({ revoked: false, trusted: false });
    expect(await runCli(['abort', after.plan.name, '--as', 'carol'])).toMatchObject({ code: 0 });
  } finally {
    await client.connection.close();
  }
});
