/**
 * Access is preserved exactly (issue 12, finding 1; issue 13, finding 1), in a Supabase-like database whose
 * default privileges grant ALL on every new table in `public` to anon, authenticated and service_role:
 * - a role with grants on some columns only, and a role that reads the table only through a view owned by
 *   somebody else, read exactly what they read before, after cutover and after rollback, in a plain swap and
 *   with a compatibility view;
 * - the whole privilege matrix (every role × the live name, its columns, the view over it, its sequence; and
 *   row-level security) is equal before, after cutover and after rollback;
 * - the new table is sealed until cutover, the retired table after it: anon reads nothing from either, during the
 *   copy too;
 * - writes to the new table at the cutover gate (and to the retired table after cutover) are refused, whoever
 *   makes them: by privileges for anon and authenticated, by the write guard (src/write-guard.ts) for roles that
 *   privileges do not stop (the owner and superusers, a member of the owner role, BYPASSRLS with
 *   pg_write_all_data, a session_replication_role = replica session); none of them reaches the live table;
 * - a write guard dropped before cutover makes the cutover fail closed: rolled back, the live table untouched.
 */
import { accessDifferences } from '../../src/access-matrix';
import { accessOf } from '../support/access';
import { atPhase, basePlan, fingerprint, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';
import { asRole } from '../support/supabase';
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';

/** What a role can do, said the way a person would check it by hand. */
async function can(role: string, query: string): Promise<boolean> {
  try {
    await asRole(role, query);
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === '42501') return false;
    throw err;
  }
}

/**
 * A write that commits if it is allowed, in a session of its own: as the connecting role (postgres: superuser and
 * owner of every table safeshift made), or SET ROLE `role`, optionally as a replica-role session. Its error
 * message, or 'written'.
 */
async function write(query: string, how: { role?: string; replica?: boolean } = {}): Promise<string> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    if (how.replica) await client.query(`SET session_replication_role = replica`);
    if (how.role) await client.query(`SET ROLE ${pg.escapeIdentifier(how.role)}`);
    await client.query(query);
    return 'written';
  } catch (err) {
    return (err as Error).message;
  } finally {
    await client.end();
  }
}

const SEALED = /refused: the table is sealed by safeshift/;

/**
 * INSERT, UPDATE, DELETE (and TRUNCATE) on `table` by everyone who might: refused, by privileges or by the guard.
 * `writer`: BYPASSRLS with pg_read_all_data and pg_write_all_data; `member`: a member of the owner role.
 */
async function expectWritesRefused(table: string, writer: string, member: string): Promise<void> {
  const attempts = [
    `INSERT INTO ${table} (id, title) VALUES (100001, 'planted')`,
    `UPDATE ${table} SET title = 'tampered' WHERE id = 2`,
    `DELETE FROM ${table} WHERE id = 3`,
  ];
  for (const q of attempts) {
    for (const role of ['anon', 'authenticated']) expect(`${role}: ${await write(q, { role })}`).toMatch(/permission denied/);
    for (const [who, how] of [['bypassrls + pg_write_all_data', { role: writer }], ['owner role member', { role: member }],
      ['superuser owner', {}], ['replica session', { replica: true }]] as const) {
      expect(`${who}: ${await write(q, how)}`).toMatch(SEALED);
    }
  }
  expect(await write(`TRUNCATE ${table}`)).toMatch(SEALED);
}

async function setup(compatView: boolean) {
  const t = uniqueName('acc');
  const colRole = `${t}_col`;
  const viewer = `${t}_viewer`;
  const viewOwner = `${t}_vowner`;
  for (const r of [colRole, viewer, viewOwner]) await sql(`CREATE ROLE ${r} NOLOGIN`);
  await sql(`GRANT ${colRole}, ${viewer}, ${viewOwner} TO postgres`);
  await sql(`CREATE TABLE public.${t} (id serial PRIMARY KEY, title text NOT NULL, body text, email text)`);
  await sql(`INSERT INTO public.${t} (title, body, email) SELECT 'title ' || g, 'body ' || g, 'person' || g || '@example.org' FROM generate_series(1, 500) g`);
  // Supabase's defaults gave the API roles ALL: this table's owner narrowed them, as a careful team does.
  await sql(`REVOKE ALL ON public.${t} FROM anon, authenticated, service_role`);
  await sql(`GRANT SELECT (id, title) ON public.${t} TO anon`);
  await sql(`GRANT SELECT, INSERT, UPDATE ON public.${t} TO authenticated`);
  await sql(`GRANT SELECT (id, title), UPDATE (title) ON public.${t} TO ${colRole}`);
  await sql(`GRANT SELECT ON public.${t} TO ${viewOwner}`);
  await sql(`GRANT USAGE ON SCHEMA public TO ${viewOwner}`);
  await sql(`CREATE VIEW public.${t}_titles AS SELECT id, title FROM public.${t}`);
  await sql(`ALTER VIEW public.${t}_titles OWNER TO ${viewOwner}`);
  await sql(`REVOKE ALL ON public.${t}_titles FROM anon, authenticated, service_role`);
  await sql(`GRANT SELECT ON public.${t}_titles TO ${viewer}`);
  // A function of the table's row type (recreated at cutover), executable by service_role only; and an analyst
  // who reads everything (pg_read_all_data bypasses privileges, not row-level security).
  await sql(`CREATE FUNCTION public.${t}_all() RETURNS SETOF public.${t} LANGUAGE sql STABLE AS 'SELECT * FROM public.${t}'`);
  await sql(`REVOKE ALL ON FUNCTION public.${t}_all() FROM PUBLIC, anon, authenticated`);
  await sql(`GRANT EXECUTE ON FUNCTION public.${t}_all() TO service_role`);
  await sql(`CREATE ROLE ${t}_analyst NOLOGIN`);
  await sql(`GRANT pg_read_all_data TO ${t}_analyst`);
  await sql(`GRANT ${t}_analyst TO postgres`);
  // Roles privileges do not stop: a service account with BYPASSRLS and pg_write_all_data, a member of the owner role.
  await sql(`CREATE ROLE ${t}_writer NOLOGIN BYPASSRLS`);
  await sql(`GRANT pg_read_all_data, pg_write_all_data TO ${t}_writer`);
  await sql(`CREATE ROLE ${t}_member NOLOGIN`);
  await sql(`GRANT postgres TO ${t}_member`);
  // The plain swap's copy is slowed (each chunk of 50 rows about 0.2 s), so the test can look in while it runs.
  await sql(`CREATE FUNCTION public.${t}_slow(v text) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN
      IF current_setting('application_name') LIKE 'safeshift copy%' THEN PERFORM pg_sleep(0.004); END IF;
      RETURN v;
    END $$`);
  const plan = basePlan(t, `public.${t}`, `public.${t}_v2`, {
    create: `CREATE TABLE public.${t}_v2 (id int PRIMARY KEY DEFAULT nextval('public.${t}_id_seq'), title text NOT NULL, content text, email text${compatView ? '' : `, CHECK (public.${t}_slow(title) IS NOT NULL)`})`,
    allowFunctions: [`public.${t}_slow`], // target DDL calls a function of the database only when the plan lists it
    columns: { content: 'body' },
    copy: { chunkRows: 50 },
    reverse: { body: 'content' },
    cutover: { compatView },
  });
  return { t, colRole, viewer, writer: `${t}_writer`, member: `${t}_member`, plan, planName: String(plan.name) };
}

/** The hand checks: what each kind of role must (and must not) be able to do through the live name. */
async function expectAccessAsBefore(t: string, colRole: string, viewer: string): Promise<void> {
  expect(await can(colRole, `SELECT id, title FROM public.${t}`)).toBe(true);
  expect(await can(colRole, `SELECT email FROM public.${t}`)).toBe(false);
  expect(await can(colRole, `UPDATE public.${t} SET title = title || '' WHERE id = 1`)).toBe(true);
  expect(await can(colRole, `UPDATE public.${t} SET email = NULL WHERE id = 1`)).toBe(false);
  expect(await can(viewer, `SELECT count(*) FROM public.${t}_titles`)).toBe(true);
  expect(await can(viewer, `SELECT count(*) FROM public.${t}`)).toBe(false);
  expect(await can('anon', `SELECT id, title FROM public.${t}`)).toBe(true);
  expect(await can('anon', `SELECT email FROM public.${t}`)).toBe(false);
  expect(await can('anon', `INSERT INTO public.${t} (title) VALUES ('x')`)).toBe(false);
  expect(await can('authenticated', `SELECT email FROM public.${t}`)).toBe(true);
  expect(await can('authenticated', `DELETE FROM public.${t} WHERE id = 1`)).toBe(false);
}

for (const compatView of [false, true]) {
  test(`access is exactly as before after cutover and after rollback (${compatView ? 'compatibility view' : 'plain swap'})`, async () => {
    const { t, colRole, viewer, writer, member, plan, planName } = await setup(compatView);
    await expectAccessAsBefore(t, colRole, viewer).catch((err) => { throw new Error(`fixture: ${(err as Error).message}`); });
    const before = await accessOf(t);
    expect(Object.values(before.entries).filter(Boolean).length).toBeGreaterThan(10);

    expect(await runCli(['start', writePlan(plan)])).toMatchObject({ code: 0, stderr: '' });
    if (!compatView) {
      // Mid-copy: some chunks committed, more to come; the rows there are readable by nobody but safeshift.
      const copied = async () => (await sql<{ n: number }>(`SELECT CASE WHEN to_regclass($1) IS NULL THEN 0 ELSE (SELECT count(*) FROM public.${t}_v2)::int END AS n`, [`public.${t}_v2`]).catch(() => [{ n: 0 }]))[0]!.n;
      const deadline = Date.now() + 60_000;
      while ((await copied()) === 0 && Date.now() < deadline) await sleep(50);
      expect(await copied()).toBeLessThan(500);
      for (const role of ['anon', 'authenticated']) expect(await can(role, `SELECT count(*) FROM public.${t}_v2`)).toBe(false);
      expect(await asRole(`${t}_analyst`, `SELECT count(*)::int AS n FROM public.${t}_v2`)).toEqual([{ n: 0 }]);
    }
    const atGate = await waitFor(planName, atPhase('awaiting_cutover'));
    // The new table holds every row by now, and nobody but safeshift may read or write it; nor the backup table,
    // nor the change table (the keys of changed rows).
    const sourceOid = (await sql<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid`, [`public.${t}`]))[0]!.oid;
    const targetOid = (await sql<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid`, [`public.${t}_v2`]))[0]!.oid;
    expect(atGate.backupTable).toBeDefined();
    for (const role of ['anon', 'authenticated', 'service_role']) {
      expect(await can(role, `SELECT count(*) FROM public.${t}_v2`)).toBe(false);
      expect(await can(role, `INSERT INTO public.${t}_v2 (id, title) VALUES (100000, 'planted')`)).toBe(false);
      expect(await can(role, `SELECT count(*) FROM ${atGate.backupTable}`)).toBe(false);
      expect(await can(role, `SELECT count(*) FROM safeshift.changes_${sourceOid}`)).toBe(false);
    }
    // pg_read_all_data passes privileges; the sealed tables' row-level security (no policy) still shows no row.
    for (const table of [`public.${t}_v2`, atGate.backupTable!, `safeshift.changes_${sourceOid}`]) {
      expect(await asRole(`${t}_analyst`, `SELECT count(*)::int AS n FROM ${table}`)).toEqual([{ n: 0 }]);
    }
    // Writes to the new table at the gate (issue 13, finding 2): refused by privileges or by the write guard.
    await expectWritesRefused(`public.${t}_v2`, writer, member);

    expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
    const atDrop = await waitFor(planName, atPhase('awaiting_drop'));
    // None of those writes went live: the live table holds exactly the old table's rows.
    const rows = (table: string) => fingerprint(`SELECT id, title, email FROM ${table}`, 'id');
    expect(await rows(`public.${t}`)).toEqual(await rows(atDrop.retiredTable!));
    expect((await rows(`public.${t}`)).rows).toBe(500);
    // The retired table is guarded until the drop or a swap back; the live table is not any more.
    await expectWritesRefused(atDrop.retiredTable!, writer, member);
    expect(await write(`UPDATE public.${t} SET title = title WHERE id = 1`)).toBe('written');
    await expectAccessAsBefore(t, colRole, viewer);
    // Every privilege asked before is asked again; body is called content in the new shape (plain swap).
    const afterCutover = await accessOf(t, before.objects);
    expect(accessDifferences(before, afterCutover, compatView ? {} : { body: 'content' })).toEqual([]);
    const renamed = (k: string) => (compatView ? k : k.replace(' (body)', ' (content)'));
    expect(Object.keys(before.entries).map(renamed).filter((k) => !Object.hasOwn(afterCutover.entries, k))).toEqual([]);
    expect(afterCutover.rowSecurity).toEqual(before.rowSecurity);
    // The function was dropped and created again over the new table: its ACL is the old one, not the defaults'.
    expect(await sql(`SELECT has_function_privilege('anon', 'public.${t}_all()', 'EXECUTE') AS anon,
                             has_function_privilege('service_role', 'public.${t}_all()', 'EXECUTE') AS service`)).toEqual([{ anon: false, service: true }]);
    expect(await asRole(`${t}_analyst`, `SELECT count(*)::int AS n FROM ${atDrop.retiredTable}`)).toEqual([{ n: 0 }]);
    // The retired table keeps the old rows and nobody's grants.
    for (const role of ['anon', 'authenticated', 'service_role', colRole]) {
      expect(await can(role, `SELECT count(*) FROM ${atDrop.retiredTable}`)).toBe(false);
      expect(await can(role, `SELECT count(*) FROM ${atGate.backupTable}`)).toBe(false);
      expect(await can(role, `SELECT count(*) FROM safeshift.changes_${targetOid}`)).toBe(false); // reverse capture
    }

    expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
    const end = await waitFor(planName, atPhase('rolled_back'));
    expect(end.compensations[0]).toEqual({ name: 'swapBack', state: 'done' });
    await expectAccessAsBefore(t, colRole, viewer);
    const afterRollback = await accessOf(t, before.objects);
    expect(afterRollback.entries).toEqual(before.entries);
    expect(afterRollback.rowSecurity).toEqual(before.rowSecurity);
    // No write guard is left behind: the original table is written as before.
    expect(await sql(`SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname LIKE 'safeshift%'`, [`public.${t}`])).toEqual([]);
    expect(await write(`UPDATE public.${t} SET title = title WHERE id = 1`)).toBe('written');
  });
}

test('preflight refuses a cutover that would change access, naming role and privilege', async () => {
  const { t, plan } = await setup(false);
  // The target DDL grants anon more than the old table did: the cutover would widen anon's access.
  const widened = { ...plan, create: `${String(plan.create)}; GRANT ALL ON public.${t}_v2 TO anon` };
  const result = await runCli(['plan', 'validate', writePlan(widened)]);
  // Sealing and the exact grant move make the DDL's grant moot: access stays as it was, so the plan is valid.
  expect(result.stderr).not.toMatch(/access would change/);
  // A policy on the target that the old table did not have changes who sees what: refused, named.
  const policy = { ...plan, create: `${String(plan.create)}; ALTER TABLE public.${t}_v2 ENABLE ROW LEVEL SECURITY; CREATE POLICY extra ON public.${t}_v2 FOR SELECT TO anon USING (true)` };
  const refused = await runCli(['start', writePlan(policy)]);
  expect(refused.code).toBe(2);
  // The flags are the old table's at cutover (the DDL's ENABLE is undone by the move); the policy is the change.
  expect(refused.stderr).not.toMatch(/row level security enabled: after only/);
  expect(refused.stderr).toMatch(/access would change: policy extra: r permissive to anon using \(true\) with check \(\): after only/);
});

test('a write guard dropped before cutover makes the cutover fail closed: rolled back, the live table untouched', async () => {
  const t = uniqueName('guard');
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, v text NOT NULL)`);
  await sql(`INSERT INTO public.${t} SELECT g, 'v' || g FROM generate_series(1, 50) g`);
  const plan = basePlan(t, `public.${t}`, `public.${t}_v2`);
  const planName = String(plan.name);
  const before = await fingerprint(`SELECT * FROM public.${t}`, 'id');
  expect((await runCli(['start', writePlan(plan)])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_cutover'));
  // A superuser goes around the guard: drops it and writes a row the application never wrote.
  await sql(`DROP TRIGGER IF EXISTS safeshift_write_guard ON public.${t}_v2`);
  expect(await write(`INSERT INTO public.${t}_v2 (id, v) VALUES (1000, 'planted')`)).toBe('written');
  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  const end = await waitFor(planName, atPhase('rolled_back'));
  expect(end.outcome?.reason).toMatch(/cutover refused: public\.\S+_v2 may hold writes safeshift did not make \(public\.\S+_v2: its write guard was dropped\)/);
  expect(await fingerprint(`SELECT * FROM public.${t}`, 'id')).toEqual(before);
  expect(await sql(`SELECT to_regclass($1) AS r`, [`public.${t}_v2`])).toEqual([{ r: null }]);
  expect(await sql(`SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass`, [`public.${t}`])).toEqual([]);
});
