/**
 * Preflight of an in-place plan (plan field `alter:`): the ops classified (src/in-place.ts), then checked one
 * after the other against the live table as each leaves it (columns, constraint and index names, what depends on
 * a dropped column, whether a DEFAULT calls a volatile function), and at `start` rehearsed in a transaction that
 * is rolled back: any op that would rewrite the table (relfilenode changes) is refused. Read-only otherwise.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { Plan } from '../src/plan/schema';
import { classifyAlter, describeOp, hiddenColumnName, pathNote, stepsOf, COPY_PATH_HINT, type ResolvedOp } from '../src/in-place';
import { estimatedRowCount, tableInfo, tableOid } from '../src/catalog';
import { displayName, nameWithSuffix, type TableRef } from '../src/sql';
import { errorText } from '../src/redact';
import { pgErrorCode } from '../src/db';
import { PlanCheckFailed, REHEARSAL_LOCK } from './preflight';

export interface InPlaceReport {
  sourceOid: number;
  /** pg_class.relfilenode at preflight: a rewrite would change it; cutover and drop compare. */
  relfilenode: string;
  ops: ResolvedOp[];
  /** The table's name once every op ran (a RENAME TO changes it). */
  finalName: TableRef;
  backup: TableRef;
  rowsEstimate: number;
  /** The path line first, then one line per op (what changes at cutover, what a rollback does). */
  warnings: string[];
}

interface Column { notNull: boolean; hasDefault: boolean; inKey: boolean; attnum: number }

export async function relfilenodeOf(client: pg.Client, oid: number): Promise<string> {
  const { rows } = await client.query<{ f: string }>(`SELECT relfilenode::text AS f FROM pg_class WHERE oid = $1`, [oid]);
  return rows[0]!.f;
}

export async function inspectInPlace(client: pg.Client, plan: Plan, stamp: string, options: { rehearse?: boolean } = {}): Promise<InPlaceReport> {
  const problems: string[] = [];
  const source = await tableInfo(client, plan.source);
  if (!source) throw new PlanCheckFailed([`source: table ${displayName(plan.source)} does not exist`]);
  if (source.kind !== 'r') throw new PlanCheckFailed([`source: ${displayName(plan.source)} is not a plain table (relkind ${source.kind}); in place, only plain tables are changed; ${COPY_PATH_HINT}`]);
  const inherits = await client.query(`SELECT 1 FROM pg_inherits WHERE inhrelid = $1 OR inhparent = $1 LIMIT 1`, [source.oid]);
  if (inherits.rows.length) problems.push(`source: ${displayName(plan.source)} is a partition or has inheritance children; in place, only plain tables are changed; ${COPY_PATH_HINT}`);
  const owner = await client.query<{ ok: boolean }>(`SELECT pg_has_role(current_user, $1::text, 'USAGE') AS ok`, [source.owner]);
  if (!owner.rows[0]?.ok) problems.push(`source: the connecting role must own ${displayName(plan.source)} (owner: ${source.owner}) to alter it`);
  const backup = { schema: 'safeshift_backup', name: nameWithSuffix(`${plan.source.schema}_${plan.source.name}`, `_${stamp}`) };
  if (plan.backup.table && (await tableOid(client, backup))) problems.push(`backup: the backup name ${displayName(backup)} is taken`);

  const { ops, problems: classified, finalName } = await classifyAlter(plan.alter ?? '', plan.source);
  problems.push(...classified);
  if (problems.length) throw new PlanCheckFailed(problems);
  const resolved = await resolveOps(client, source.oid, plan.source, ops, stamp, problems);
  if (problems.length === 0 && (options.rehearse ?? true)) await rehearse(client, source.oid, plan.source, resolved, stamp, problems);
  if (problems.length) throw new PlanCheckFailed(problems);
  return {
    sourceOid: source.oid,
    relfilenode: await relfilenodeOf(client, source.oid),
    ops: resolved,
    finalName,
    backup,
    rowsEstimate: await estimatedRowCount(client, plan.source, source.oid),
    warnings: [pathNote(plan, resolved), ...resolved.map((op) => `at cutover: ${describeOp(op)}`)],
  };
}

/** Each op against the table as the ops before it leave it; fills in what its rollback needs. */
async function resolveOps(client: pg.Client, oid: number, table: TableRef, ops: ResolvedOp[], stamp: string, problems: string[]): Promise<ResolvedOp[]> {
  const cols = new Map<string, Column>((await client.query<{ name: string; notnull: boolean; hasdef: boolean; inkey: boolean; attnum: number }>(
    `SELECT a.attname AS name, a.attnotnull AS notnull, a.atthasdef AS hasdef, a.attnum::int AS attnum,
            EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND (i.indisprimary OR i.indisreplident) AND a.attnum = ANY (i.indkey)) AS inkey
       FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`, [oid])).rows
    .map((r) => [r.name, { notNull: r.notnull, hasDefault: r.hasdef, inKey: r.inkey, attnum: r.attnum }]));
  const constraints = new Set((await client.query<{ n: string }>(`SELECT conname AS n FROM pg_constraint WHERE conrelid = $1`, [oid])).rows.map((r) => r.n));
  const relationTaken = async (name: string) => (await tableOid(client, { schema: table.schema, name })) !== undefined;
  const out: ResolvedOp[] = [];
  const added = new Set<string>();
  for (const op of ops) {
    const at = `alter: statement ${op.statement}`;
    const column = (name: string): Column | undefined => {
      const c = cols.get(name);
      if (!c) problems.push(`${at}: ${displayName(table)} has no column ${name} (at that point)`);
      return c;
    };
    const free = (name: string) => {
      if (cols.has(name)) { problems.push(`${at}: ${displayName(table)} already has a column ${name}`); return false; }
      return true;
    };
    switch (op.kind) {
      case 'rename_column': {
        const c = column(op.from);
        if (c && free(op.to)) { cols.delete(op.from); cols.set(op.to, c); }
        out.push(op);
        break;
      }
      case 'add_column':
        if (free(op.column)) cols.set(op.column, { notNull: false, hasDefault: true, inKey: false, attnum: 0 });
        problems.push(...(await volatileCalls(client, op.functions)).map((f) => `${at}: the DEFAULT of ${op.column} calls ${f}, which is volatile: every row would be rewritten; ${COPY_PATH_HINT}`));
        added.add(op.column);
        out.push(op);
        break;
      case 'drop_column': {
        const c = column(op.column);
        const hidden = hiddenColumnName(op.column, stamp);
        if (c) problems.push(...(await dropColumnProblems(client, oid, table, op.column, c, at)));
        if (c && added.has(op.column)) problems.push(`${at}: drops ${op.column}, which this plan adds`);
        if (c) { cols.delete(op.column); cols.set(hidden, c); }
        out.push({ ...op, hidden, relaxNotNull: !!c && c.notNull && !c.hasDefault });
        break;
      }
      case 'rename_table':
        if (await relationTaken(op.to)) problems.push(`${at}: ${displayName({ schema: table.schema, name: op.to })} already exists`);
        out.push(op);
        break;
      case 'add_constraint':
        if (constraints.has(op.name)) problems.push(`${at}: ${displayName(table)} already has a constraint ${op.name}`);
        constraints.add(op.name);
        out.push(op);
        break;
      case 'validate_constraint':
        if (!constraints.has(op.name)) problems.push(`${at}: ${displayName(table)} has no constraint ${op.name}`);
        out.push(op);
        break;
      case 'set_not_null': {
        const c = column(op.column);
        out.push({ ...op, wasNotNull: c?.notNull ?? false });
        if (c) c.notNull = true;
        break;
      }
      case 'create_index':
        if (await relationTaken(op.name)) problems.push(`${at}: a relation ${displayName({ schema: table.schema, name: op.name })} already exists`);
        out.push(op);
        break;
    }
  }
  return out;
}

/** A column whose DROP (without CASCADE) would fail or take the key with it: the primary key, what depends on it. */
async function dropColumnProblems(client: pg.Client, oid: number, table: TableRef, column: string, c: Column, at: string): Promise<string[]> {
  const problems: string[] = [];
  if (c.inKey) problems.push(`${at}: ${column} is in the primary key or replica identity of ${displayName(table)}; ${COPY_PATH_HINT}`);
  if (c.attnum <= 0) return problems; // added by this plan: nothing depends on it yet
  const deps = await client.query<{ what: string }>(
    // A view's dependency is its _RETURN rule's: named as the view.
    `SELECT DISTINCT COALESCE(pg_describe_object('pg_class'::regclass, r.ev_class, 0), pg_describe_object(d.classid, d.objid, d.objsubid)) AS what
       FROM pg_depend d LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
      WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = $1 AND d.refobjsubid = $2 AND d.deptype = 'n'`, [oid, c.attnum]);
  const n = deps.rows.length;
  if (n) problems.push(`${at}: ${deps.rows.map((r) => r.what).join(', ')} depend${n === 1 ? 's' : ''} on column ${column}; drop or change ${n === 1 ? 'it' : 'them'} first`);
  return problems;
}

/** Functions (by the name a DEFAULT gives) of which an overload is volatile; schema-less names are looked up in pg_catalog and the search path. */
async function volatileCalls(client: pg.Client, names: string[][]): Promise<string[]> {
  const found: string[] = [];
  for (const parts of names) {
    const name = parts.at(-1)!;
    const schema = parts.length > 1 ? parts.at(-2)! : null;
    const { rows } = await client.query<{ f: string }>(
      `SELECT DISTINCT n.nspname || '.' || p.proname AS f FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.proname = $1 AND p.provolatile = 'v'
          AND (CASE WHEN $2::text IS NULL THEN n.nspname = ANY (current_schemas(true)) ELSE n.nspname = $2::text END)`,
      [name, schema],
    );
    found.push(...rows.map((r) => r.f));
  }
  return [...new Set(found)];
}

/**
 * The in-transaction part of each op, run and rolled back under a short lock_timeout: a statement that fails
 * is named with PostgreSQL's reason, one that gives the table a new relfilenode (a rewrite) is refused. VALIDATE,
 * SET NOT NULL (a scan) and CREATE INDEX CONCURRENTLY (no transaction) are left to cutover.
 */
async function rehearse(client: pg.Client, oid: number, table: TableRef, ops: ResolvedOp[], stamp: string, problems: string[]): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await client.query('BEGIN');
    try {
      await client.query(`SET LOCAL lock_timeout = ${REHEARSAL_LOCK.timeoutMs}`);
      const before = await relfilenodeOf(client, oid);
      let name = table;
      for (const op of ops) {
        if (op.kind === 'validate_constraint' || op.kind === 'set_not_null' || op.kind === 'create_index') continue;
        const steps = stepsOf(op, name, stamp).apply.filter((s) => !/^ALTER TABLE .* VALIDATE CONSTRAINT /s.test(s));
        await client.query('SAVEPOINT op');
        try {
          for (const s of steps) await client.query(s);
        } catch (err) {
          if (pgErrorCode(err) === '55P03') throw err;
          problems.push(`alter: statement ${op.statement} fails: ${errorText(err)}`);
          await client.query('ROLLBACK TO SAVEPOINT op');
          continue;
        }
        if ((await relfilenodeOf(client, oid)) !== before) {
          problems.push(`alter: statement ${op.statement} rewrites ${displayName(table)} (its storage changed when rehearsed): it is not catalog-only; ${COPY_PATH_HINT}`);
          return;
        }
        if (op.kind === 'rename_table') name = { schema: name.schema, name: op.to };
      }
      return;
    } catch (err) {
      if (pgErrorCode(err) !== '55P03') throw err;
      if (attempt >= REHEARSAL_LOCK.attempts) {
        problems.push(`source: ${displayName(table)} stayed busy: its lock was not free within ${REHEARSAL_LOCK.timeoutMs} ms in ${attempt} attempts (long transactions, see pg_stat_activity); retry later`);
        return;
      }
      await client.query('ROLLBACK').catch(() => undefined);
      await sleep(REHEARSAL_LOCK.pauseMs);
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
    }
  }
}
