/**
 * `npm run bench:access`: how long reading the privilege matrix (src/access-matrix.ts) takes, which the cutover
 * does twice (before the lock, after the commit) and preflight's rehearsal twice (the second while it holds its
 * locks).
 *
 * Creates BENCH_ROLES roles (default 50) and a table of BENCH_COLUMNS columns (default 40) with views over it
 * (both can be written through: INSERT, UPDATE per column and DELETE are asked too) and a function returning SETOF it:
 * every 3rd role has SELECT on the table, every 5th SELECT on three columns and UPDATE on one (the per-column
 * case). Then reads the matrix BENCH_RUNS times (default 5) for the table (ACL functions) and for a
 * `security_invoker` view over it (probed as each role with EXPLAIN), and reports each run's time. Everything it
 * creates is dropped at the end. Uses DATABASE_URL, or starts the embedded stack like the other benches.
 */
import pg from 'pg';
import { readAccess } from '../src/access-matrix';
import { attachOrStartDevStack } from '../src/dev/stack';

const ROLES = Number(process.env.BENCH_ROLES ?? 50);
const COLUMNS = Number(process.env.BENCH_COLUMNS ?? 40);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);

async function main(): Promise<void> {
  const stack = await attachOrStartDevStack({ log: () => undefined });
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL!, application_name: 'bench access' });
  await client.connect();
  const tag = `bench_access_${Math.floor(Date.now() / 1000)}`;
  const roles = Array.from({ length: ROLES }, (_, i) => `${tag}_r${i + 1}`);
  try {
    const cols = Array.from({ length: COLUMNS }, (_, i) => `c${i + 1} text`).join(', ');
    await client.query(`CREATE TABLE public.${tag} (id int PRIMARY KEY, ${cols})`);
    await client.query(`CREATE VIEW public.${tag}_v AS SELECT id, c1, c2 FROM public.${tag}`);
    await client.query(`CREATE VIEW public.${tag}_inv WITH (security_invoker = true) AS SELECT * FROM public.${tag}`);
    await client.query(`CREATE FUNCTION public.${tag}_all() RETURNS SETOF public.${tag} LANGUAGE sql STABLE AS 'SELECT * FROM public.${tag}'`);
    for (const [i, role] of roles.entries()) {
      await client.query(`CREATE ROLE ${role} NOLOGIN`);
      if ((i + 1) % 3 === 0) await client.query(`GRANT SELECT ON public.${tag}, public.${tag}_inv TO ${role}`);
      if ((i + 1) % 5 === 0) await client.query(`GRANT SELECT (id, c1, c2), UPDATE (c3) ON public.${tag} TO ${role}`);
    }
    const total = (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname !~ '^pg_' AND NOT rolsuper`)).rows[0]!.n;
    console.log(`${total} roles (${ROLES} made here), a table of ${COLUMNS + 1} columns, a view over it`);
    for (const [what, name] of [['table (ACL functions)', tag], ['security_invoker view (EXPLAIN as each role)', `${tag}_inv`]] as const) {
      const times: number[] = [];
      let entries = 0;
      for (let run = 0; run < RUNS; run += 1) {
        const started = performance.now();
        const m = await readAccess(client, { schema: 'public', name });
        times.push(performance.now() - started);
        entries = Object.keys(m.entries).length;
      }
      console.log(`${what}: ${entries} entries; ms per read: ${times.map((t) => t.toFixed(0)).join(', ')}`);
    }
  } finally {
    await client.query(`DROP TABLE IF EXISTS public.${tag} CASCADE`).catch(() => undefined);
    for (const role of roles) await client.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
    await client.end();
    await stack?.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
