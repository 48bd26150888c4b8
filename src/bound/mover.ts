/**
 * What every kind of bound object (one module each in src/bound/, orchestrated by src/bound-objects.ts) moves
 * with. `Mover` runs an object's statements and records them for the audit log; in a dry run (preflight's
 * rehearsal) each object runs under its own SAVEPOINT, so one failure becomes a problem naming the object and the
 * rest still run. The same move serves the cutover (old table -> new) and the swap back (new -> old): only the
 * roles of `from` and `to` change.
 */
import type pg from 'pg';
import { errorText } from '../redact';
import { displayName, qualified, quoteIdent, type TableRef } from '../sql';

const SAVEPOINT = 'safeshift_bound_object';

/** A catalog read about the captured table: its OID is `$1`. */
export type CatalogQuery = <T extends pg.QueryResultRow>(text: string) => Promise<T[]>;

/** A table's own row in pg_class: read for the old table at capture and for the new one at the move. */
export interface TableRow {
  owner: string;
  rls: boolean;
  force: boolean;
  replident: string;
  comment: string | null;
}

export async function tableRow(client: pg.Client, oid: number): Promise<TableRow> {
  const { rows } = await client.query<TableRow>(
    `SELECT pg_get_userbyid(c.relowner) AS owner, c.relrowsecurity AS rls, c.relforcerowsecurity AS force,
            c.relreplident AS replident, obj_description(c.oid, 'pg_class') AS comment
       FROM pg_class c WHERE c.oid = $1`, [oid]);
  return rows[0]!;
}

/** The old table, renamed away from the live name (in swap back: the new table). */
export interface MoveSource {
  oid: number;
  ref: TableRef;
}

/** The table the objects move to, at the live name, as every kind's move sees it (read once per move). */
export interface MoveTarget {
  oid: number;
  ref: TableRef;
  /** `qualified(ref)`, for statements. */
  sql: string;
  /** `displayName(ref)`, for labels. */
  shown: string;
  row: TableRow;
  columns: Set<string>;
}

/** PostgreSQL's deparsed SQL sometimes ends with `;`; embedded in a larger statement it must not. */
export function withoutSemicolon(sql: string): string {
  return sql.trim().replace(/;$/, '').trimEnd();
}

export function grantee(role: string | null): string {
  return role === null ? 'PUBLIC' : quoteIdent(role);
}

export function roleName(role: string | null): string {
  return role === null ? 'PUBLIC' : role;
}

/**
 * A DROP ... RESTRICT that something else still depends on: the error keeps its SQLSTATE and gains PostgreSQL's
 * detail (what depends on it), so the refusal names the dependents as well as the object.
 */
export async function dropRestrict(run: (sql: string) => Promise<pg.QueryResult>, sql: string): Promise<void> {
  try {
    await run(sql);
  } catch (err) {
    const detail = (err as { detail?: string }).detail;
    if (err instanceof Error && detail) err.message = `${err.message} (${detail.replace(/\n/g, '; ')}); not recreated while something depends on it`;
    throw err;
  }
}

/** Runs statements object by object: in a dry run each object under a SAVEPOINT, failures become problems. */
export class Mover {
  readonly statements: string[] = [];
  readonly problems: string[] = [];
  readonly skipped: string[] = [];
  /** What the approver should know about how an object moves (e.g. a view dropped and created again). */
  readonly notes: string[] = [];

  constructor(readonly client: pg.Client, readonly dryRun: boolean) {}

  /** One object: its statements succeed together or (dry run) fail together as one problem naming `label`. */
  async object(
    label: string,
    fn: (run: (sql: string) => Promise<pg.QueryResult>, note: (sql: string) => void) => Promise<void>,
  ): Promise<boolean> {
    const ran: string[] = [];
    const run = async (sql: string) => {
      const result = await this.client.query(sql);
      ran.push(sql);
      return result;
    };
    /** Statements run by a helper (src/swap.ts), recorded in the audit log as their shape. */
    const note = (sql: string) => { ran.push(sql); };
    if (!this.dryRun) {
      try {
        await fn(run, note);
      } catch (err) {
        // Keep the error itself (its SQLSTATE decides whether the cutover is retried); name the object in it.
        if (err instanceof Error) err.message = `${label}: ${err.message}`;
        throw err;
      }
      this.statements.push(...ran);
      return true;
    }
    await this.client.query(`SAVEPOINT ${SAVEPOINT}`);
    try {
      await fn(run, note);
      await this.client.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
      this.statements.push(...ran);
      return true;
    } catch (err) {
      await this.client.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}`);
      await this.client.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
      this.problems.push(`${label}: ${errorText(err)}`);
      return false;
    }
  }

  async rows<T extends pg.QueryResultRow>(text: string, values: unknown[]): Promise<T[]> {
    return (await this.client.query<T>(text, values)).rows;
  }

  /** The last step of a move, the proof: nothing else still holds the old table (or view). Tried, then undone. */
  async proveDroppable(retired: TableRef, kind: 'TABLE' | 'VIEW' = 'TABLE'): Promise<void> {
    // One round trip when it drops (under the cutover lock every round trip is time writers wait); when it does
    // not, PostgreSQL skips the rest of the string and the savepoint is undone in a second.
    const undo = `ROLLBACK TO SAVEPOINT ${SAVEPOINT}; RELEASE SAVEPOINT ${SAVEPOINT}`;
    try {
      await this.client.query(`SAVEPOINT ${SAVEPOINT}; DROP ${kind} ${qualified(retired)} RESTRICT; ${undo}`);
    } catch (err) {
      const detail = (err as { detail?: string }).detail;
      this.problems.push(`old ${kind.toLowerCase()} ${displayName(retired)} cannot be dropped without CASCADE: ${errorText(err)}${detail ? ` (${detail.replace(/\n/g, '; ')})` : ''}`);
      await this.client.query(undo);
    }
  }
}
