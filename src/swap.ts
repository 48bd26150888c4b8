/**
 * The statements that run under the cutover lock, in one place so a reader can see everything that happens
 * while writers wait. Callers hold the transaction; these functions only issue statements.
 */
import type pg from 'pg';
import { qualified, quoteIdent, quoteLiteral, type TableRef } from './sql';

export async function setLockTimeout(client: pg.Client, ms: number): Promise<void> {
  await client.query(`SELECT set_config('lock_timeout', $1, true)`, [`${ms}ms`]);
}

export async function lockExclusive(client: pg.Client, t: TableRef): Promise<void> {
  await client.query(`LOCK TABLE ${qualified(t)} IN ACCESS EXCLUSIVE MODE`);
}

/** Move table `from` to the name `to` (schema and name), in at most two statements. */
export async function moveTable(client: pg.Client, from: TableRef, to: TableRef): Promise<void> {
  let at = from;
  if (from.schema !== to.schema) {
    await client.query(`ALTER TABLE ${qualified(at)} SET SCHEMA ${quoteIdent(to.schema)}`);
    at = { schema: to.schema, name: from.name };
  }
  if (at.name !== to.name) await client.query(`ALTER TABLE ${qualified(at)} RENAME TO ${quoteIdent(to.name)}`);
}

/**
 * Sequences owned by `fromOid`'s columns that `toOid`'s column defaults use (a target made with LIKE ... INCLUDING
 * ALL shares the source's serial sequence): hand them to `to`, or dropping the retired table would drop them.
 */
export async function moveSharedSequences(client: pg.Client, fromOid: number, toOid: number, to: TableRef): Promise<string[]> {
  const { rows } = await client.query<{ seq: string; col: string }>(
    `SELECT DISTINCT format('%I.%I', sn.nspname, s.relname) AS seq, ta.attname AS col
       FROM pg_depend own
       JOIN pg_class s ON s.oid = own.objid AND s.relkind = 'S'
       JOIN pg_namespace sn ON sn.oid = s.relnamespace
       JOIN pg_depend dep ON dep.refobjid = s.oid AND dep.classid = 'pg_attrdef'::regclass
       JOIN pg_attrdef ad ON ad.oid = dep.objid AND ad.adrelid = $2
       JOIN pg_attribute ta ON ta.attrelid = ad.adrelid AND ta.attnum = ad.adnum
      WHERE own.classid = 'pg_class'::regclass AND own.refobjid = $1 AND own.deptype = 'a'`,
    [fromOid, toOid],
  );
  for (const r of rows) {
    await client.query(`ALTER SEQUENCE ${r.seq} OWNED BY ${qualified(to)}.${quoteIdent(r.col)}`);
  }
  return rows.map((r) => r.seq);
}

/** Every sequence owned by a column of `t` (serial or identity) moved past the column's max, never backwards. */
export async function advanceOwnedSequences(client: pg.Client, t: TableRef, oid: number): Promise<void> {
  const { rows } = await client.query<{ col: string; seq: string }>(
    `SELECT a.attname AS col, pg_get_serial_sequence($2, a.attname) AS seq FROM pg_attribute a
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND pg_get_serial_sequence($2, a.attname) IS NOT NULL`,
    [oid, qualified(t)],
  );
  for (const r of rows) {
    await client.query(
      `SELECT setval(${quoteLiteral(r.seq)}, m) FROM (SELECT max(${quoteIdent(r.col)})::bigint AS m FROM ${qualified(t)}) x
        WHERE m IS NOT NULL AND m > (SELECT last_value FROM ${r.seq})`,
    );
  }
}
