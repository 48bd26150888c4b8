/** Review findings pinned as tests: values are never silently changed, odd keys copy exactly, cancels roll back. */
import { connectClient } from '../../src/config';
import { migrationWorkflowId } from '../../src/messages';
import { loadPlan } from '../../src/plan/load';
import { atPhase, basePlan, fingerprint, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';

test('a value too long for the target column fails the copy with the reason; it is never truncated to fit', async () => {
  const src = uniqueName('names');
  await sql(`CREATE TABLE public.${src} (id int PRIMARY KEY, name text NOT NULL)`);
  await sql(`INSERT INTO public.${src} SELECT g, CASE WHEN g = 77 THEN repeat('x', 40) ELSE 'short' END FROM generate_series(1, 200) g`);
  const before = await fingerprint(`SELECT * FROM public.${src}`, 'id');
  const planName = src.replace(/_/g, '-');
  const plan = writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
    create: `CREATE TABLE public.${src}_v2 (id int PRIMARY KEY, name varchar(10) NOT NULL)`,
  }));
  expect((await runCli(['start', plan])).code).toBe(0);
  const end = await waitFor(planName, (s) => s.phase === 'rolled_back', 60_000);
  expect(end.outcome?.reason).toMatch(/value too long for type character varying\(10\)/);
  expect(end.gates[0]!.state).toBe('pending'); // never reached the approvers
  expect(await fingerprint(`SELECT * FROM public.${src}`, 'id')).toEqual(before);
  expect(await sql(`SELECT 1 FROM pg_class WHERE relname = $1`, [`${src}_v2`])).toHaveLength(0);
});

test('text keys with quotes, backslashes and Unicode chunk and copy exactly', async () => {
  const src = uniqueName('slugs');
  await sql(`CREATE TABLE public.${src} (slug text PRIMARY KEY, n int)`);
  await sql(`INSERT INTO public.${src}
    SELECT (ARRAY[E'o\\'brien', E'back\\\\slash', E'\\\\'' OR 1=1 --', 'ünïcödé', 'tab	here', '☃'])[1 + g % 6] || g, g
      FROM generate_series(1, 3000) g`);
  const before = await fingerprint(`SELECT * FROM public.${src}`, 'slug');
  const planName = src.replace(/_/g, '-');
  expect((await runCli(['start', writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, { copy: { chunkRows: 7, chunkTime: '0s' } }))])).code).toBe(0);
  const s = await waitFor(planName, atPhase('awaiting_cutover'));
  expect(s.copy.chunks).toBeGreaterThan(400);
  expect(await fingerprint(`SELECT * FROM public.${src}_v2`, 'slug')).toEqual(before);
  expect((await runCli(['abort', planName])).code).toBe(0);
  await waitFor(planName, atPhase('rolled_back'));
});

test('a gate that times out rolls back with the reason', async () => {
  const src = uniqueName('profiles');
  await sql(`CREATE TABLE public.${src} (id int PRIMARY KEY)`);
  await sql(`INSERT INTO public.${src} SELECT generate_series(1, 10)`);
  const planName = src.replace(/_/g, '-');
  expect((await runCli(['start', writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
    approvals: { cutover: { approvers: ['alice'], timeout: '2s' }, drop: { approvers: ['alice'] } },
  }))])).code).toBe(0);
  const end = await waitFor(planName, atPhase('rolled_back'), 60_000);
  expect(end.outcome?.reason).toBe('no decision at the cutover gate within 2s');
  expect(end.gates[0]!.state).toBe('timed_out');
});

test('cancelling the workflow in Temporal runs the compensations and completes as rolled_back', async () => {
  const src = uniqueName('profiles');
  await sql(`CREATE TABLE public.${src} (id int PRIMARY KEY, v text)`);
  await sql(`INSERT INTO public.${src} SELECT g, 'v' || g FROM generate_series(1, 100) g`);
  const { plan, hash } = loadPlan(writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`)));
  const client = await connectClient();
  try {
    const handle = await client.workflow.start('migrationWorkflow', {
      taskQueue: process.env.SAFESHIFT_TASK_QUEUE ?? 'safeshift', workflowId: migrationWorkflowId(plan.name), args: [{ plan, planHash: hash }],
    });
    await waitFor(plan.name, atPhase('awaiting_cutover'));
    await handle.cancel();
    const result = (await handle.result()) as { phase: string; outcome: { reason: string } };
    expect(result.phase).toBe('rolled_back');
    expect(result.outcome.reason).toMatch(/cancelled/);
    expect((await handle.describe()).status.name).toBe('COMPLETED');
    expect(await sql(`SELECT 1 FROM pg_class WHERE relname = $1`, [`${src}_v2`])).toHaveLength(0);
  } finally {
    await client.connection.close();
  }
});
