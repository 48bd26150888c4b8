/**
 * Seeds the Empathy Ledger demo table: `public.profiles` in the legacy shape (sql/seed-profiles.sql). Replaces
 * only a table that is demo data (the seed's table comment, or the demo's own finished migration in the ledger).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import pg from 'pg';

export const DEMO_PLAN = resolve(__dirname, 'profiles-v2.yaml');

export async function seedDemoProfiles(url: string, rows: number): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows: found } = await client.query<{ comment: string | null }>(
      `SELECT obj_description(to_regclass('public.profiles'), 'pg_class') AS comment WHERE to_regclass('public.profiles') IS NOT NULL`);
    if (found[0] && found[0].comment !== 'safeshift demo seed') {
      // After a demo run the live profiles is the migrated table (no seed comment): ours only if the ledger says so.
      const ledger = await client.query(`SELECT to_regclass('safeshift.migrations') IS NOT NULL AS ok`);
      const migrated = ledger.rows[0]?.ok
        ? await client.query(`SELECT 1 FROM safeshift.migrations WHERE name = 'empathy-ledger-profiles-v2' AND phase = 'done'`)
        : { rowCount: 0 };
      if (!migrated.rowCount) throw new Error('public.profiles exists and is not demo data: the demo will not replace it');
    }
    await client.query('DROP TABLE IF EXISTS public.profiles_v2');
    await client.query('DROP TABLE IF EXISTS public.profiles');
    const sql = readFileSync(resolve(__dirname, 'sql/seed-profiles.sql'), 'utf8');
    await client.query(sql.replace('$1::int', String(Math.trunc(rows))));
  } finally {
    await client.end();
  }
}
