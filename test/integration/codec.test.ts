/**
 * Encrypted history (issue 14, item 5), on the real stack that `safeshift dev` started with its default codec key:
 * what Temporal stores, read by a client without the codec, holds no plan text and no failure message (a refused
 * decision's reason); search attributes hold only the phase and the table; the dev stack's codec server gives it
 * back to the Temporal UI's origin (CORS preflight included) and to nobody else.
 */
import { request, type IncomingHttpHeaders } from 'node:http';
import { Client, Connection } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { payloadToJson, type JSONPayload } from '../../src/codec-server';
import { connectClient, temporalConfig } from '../../src/config';
import { MIGRATION_PHASE, MIGRATION_TABLE, migrationWorkflowId } from '../../src/messages';
import { atPhase, basePlan, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';
import { asText, decrypted, failureMessage } from '../support/history';

/** Every Payload message in a history event, wherever it sits, except search attributes (indexed, never encoded). */
function payloadsIn(value: unknown, out: Payload[] = []): Payload[] {
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return out;
  if (Array.isArray(value)) {
    for (const v of value) payloadsIn(v, out);
    return out;
  }
  const o = value as Record<string, unknown>;
  if (o.metadata && typeof o.metadata === 'object' && 'data' in o) {
    out.push(o as Payload);
    return out;
  }
  for (const [k, v] of Object.entries(o)) if (k !== 'searchAttributes') payloadsIn(v, out);
  return out;
}

const text = (b: Uint8Array | null | undefined): string => Buffer.from(b ?? []).toString('latin1');

/** node:http rather than fetch: the test sets Host and Origin as a browser or a rebound DNS name would. */
function post(path: string, init: { method?: string; headers?: Record<string, string>; body?: unknown } = {}) {
  const url = new URL(`${process.env.SAFESHIFT_CODEC_URL}${path}`);
  const data = init.body === undefined ? undefined : JSON.stringify(init.body);
  return new Promise<{ status: number; headers: IncomingHttpHeaders; body?: { payloads?: JSONPayload[]; error?: string } }>((ok, fail) => {
    const req = request(url, { method: init.method ?? 'POST', headers: { 'Content-Type': 'application/json', ...init.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        ok({ status: res.statusCode ?? 0, headers: res.headers, body: raw ? JSON.parse(raw) : undefined });
      });
    });
    req.on('error', fail);
    req.end(data);
  });
}

test('history read without the codec holds no plan text; the codec server decodes it for the UI origin only', async () => {
  const src = uniqueName('codec_payroll');
  const dst = `${src}_v2`;
  // Words that are only in the plan: the new column's name, a CHECK constraint and a mapping expression.
  const marker = 'salary_band_secret';
  await sql(`CREATE TABLE public.${src} (id int PRIMARY KEY, salary numeric)`);
  await sql(`INSERT INTO public.${src} SELECT g, g * 1000 FROM generate_series(1, 50) g`);
  const create = `CREATE TABLE public.${dst} (id int PRIMARY KEY, salary numeric, ${marker} text CONSTRAINT ${marker}_known CHECK (${marker} <> 'zzz_forbidden'))`;
  const plan = writePlan(basePlan(src, `public.${src}`, `public.${dst}`, {
    create,
    columns: { id: 'id', salary: 'salary', [marker]: `'band_' || ((salary / 1000)::int)::text` },
    copy: { chunkRows: 20, chunkTime: '0s' },
  }));
  const planName = src.replace(/_/g, '-');
  const started = await runCli(['start', plan]);
  expect(started).toMatchObject({ code: 0, stderr: '' });
  const id = migrationWorkflowId(planName);
  // Preflight, backup, copy, catch-up and validation have all written their payloads by the cutover gate.
  await waitFor(planName, atPhase('awaiting_cutover'));
  // A refused decision: its reason names the gate's approvers. The CLI's client (codec on) reads it in full.
  const refused = await runCli(['approve', planName, '--as', 'mallory']);
  expect(refused.code).toBe(2);
  expect(refused.stderr).toMatch(/refused \(NotAnApprover\): mallory is not an approver.*alice, bob/);

  const config = temporalConfig();
  const connection = await Connection.connect({ address: config.address });
  try {
    const plain = new Client({ connection, namespace: config.namespace }); // no codec: what Temporal (and its UI) hold
    const handle = plain.workflow.getHandle(id);
    const history = await handle.fetchHistory();
    const payloads = (history.events ?? []).flatMap((e) => payloadsIn(e));
    expect(payloads.length).toBeGreaterThan(20);
    // Every payload is ciphertext under the dev key, and nothing of the plan shows through.
    const encodings = new Set(payloads.map((p) => text(p.metadata?.encoding)));
    expect([...encodings]).toEqual(['binary/encrypted']);
    expect(new Set(payloads.map((p) => text(p.metadata?.['encryption-key-id'])).filter((k) => !/^dev-\d{8}-[0-9a-f]{6}$/.test(k)))).toEqual(new Set());
    const all = payloads.map((p) => text(p.data) + JSON.stringify(payloadToJson(p))).join('\n');
    for (const secret of [marker, dst, 'CREATE TABLE', 'zzz_forbidden', 'band_', 'carol', 'alice']) expect(all.includes(secret)).toBe(false);
    // The static summary and details (plan name, mapping, approvers) are encrypted too: the plain client cannot read them.
    await expect(handle.query('status')).rejects.toThrow();

    // Failures too (src/failure-converter.ts): the refused update's message and stack trace are an encrypted
    // payload; Temporal keeps only the placeholder and the failure type.
    const failures = (history.events ?? []).flatMap((e) => e.workflowExecutionUpdateCompletedEventAttributes?.outcome?.failure ?? []);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ message: 'Encoded failure', stackTrace: '', applicationFailureInfo: { type: 'NotAnApprover' } });
    expect(text(failures[0]!.encodedAttributes?.metadata?.encoding)).toBe('binary/encrypted');
    const raw = asText(history);
    for (const secret of ['is not an approver', 'mallory', 'alice, bob', marker, 'CREATE TABLE']) expect(raw.includes(secret)).toBe(false);
    // ... and the codec gives the real message back, as the CLI showed it.
    expect(await failureMessage(failures[0])).toMatch(/^mallory is not an approver .*alice, bob/);
    expect(asText(await decrypted(history))).toContain('mallory is not an approver');

    // Search attributes bypass the codec (Temporal indexes them): they hold the phase and the table's name, nothing else.
    const described = await handle.describe();
    const indexed = Object.keys(described.raw.workflowExecutionInfo?.searchAttributes?.indexedFields ?? {}).filter((k) => !/^(Temporal|BuildIds)/.test(k));
    expect(indexed.sort()).toEqual(['MigrationPhase', 'MigrationTable']);
    expect(described.typedSearchAttributes.get(MIGRATION_PHASE)).toBe('awaiting_cutover');
    expect(described.typedSearchAttributes.get(MIGRATION_TABLE)).toBe(`public.${src}`);

    // The UI's codec endpoint: the workflow's input (the whole plan) decrypts, for the UI's origin, with X-Namespace.
    const input = history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
    const ui = new URL(config.uiUrl!).origin;
    const preflight = await post('/decode', { method: 'OPTIONS', headers: { Origin: ui, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-namespace' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe(ui);
    expect(preflight.headers['access-control-allow-headers']).toMatch(/X-Namespace/i);
    const decoded = await post('/decode', { headers: { Origin: ui, 'X-Namespace': config.namespace }, body: { payloads: [payloadToJson(input)] } });
    expect(decoded.status).toBe(200);
    expect(decoded.headers['access-control-allow-origin']).toBe(ui);
    const back = decoded.body!.payloads![0]!;
    expect(Buffer.from(back.metadata!.encoding!, 'base64').toString()).toBe('json/plain');
    const argument = JSON.parse(Buffer.from(back.data!, 'base64').toString('utf8'));
    expect(argument.plan.createSql).toBe(create);
    // Also under /<namespace>/decode, as the Temporal CLI's --codec-endpoint templating calls it.
    expect((await post(`/${config.namespace}/decode`, { body: { payloads: [payloadToJson(input)] } })).status).toBe(200);

    // Another site in the operator's browser, or a rebound DNS name, gets nothing.
    const foreign = await post('/decode', { headers: { Origin: 'https://evil.example' }, body: { payloads: [payloadToJson(input)] } });
    expect(foreign.status).toBe(403);
    expect(JSON.stringify(foreign.body)).not.toContain(marker);
    expect((await post('/decode', { method: 'OPTIONS', headers: { Origin: 'https://evil.example' } })).status).toBe(403);
    const rebound = await post('/decode', { headers: { Host: 'evil.example' }, body: { payloads: [payloadToJson(input)] } });
    expect(rebound.status).toBe(403);
    expect((await post('/decode', { body: { nope: 1 } })).status).toBe(400);
  } finally {
    await connection.close();
  }

  // The safeshift client (codec on) reads and drives it as before; cancelling rolls it back.
  const client = await connectClient();
  try {
    await client.workflow.getHandle(id).cancel();
  } finally {
    await client.connection.close();
  }
  await waitFor(planName, atPhase('rolled_back'), 60_000).catch(() => undefined);
});
