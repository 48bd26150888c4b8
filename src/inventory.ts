/**
 * `safeshift inventory`: the live database as it is, read from the catalog. Stable: every list is ordered by
 * name (C collation), every object has its keys in one order, nothing depends on the session (search_path is
 * emptied, so every name is schema-qualified) or on the clock, so two runs on an unchanged database are equal.
 * One reader per object kind under src/inventory/; the shape is src/inventory/docs.ts.
 */
import type pg from 'pg';
import { inTransaction } from './db';
import { readDefaultPrivileges, readExtensions, readPublications, readRoles } from './inventory/database';
import type { Inventory } from './inventory/docs';
import { readFunctions } from './inventory/functions';
import { readTypes } from './inventory/pg-types';
import { queryOn } from './inventory/query';
import { readRelations } from './inventory/relations';

export type * from './inventory/docs';

/** `schemas` named a schema the database does not have. */
export class MissingSchemaError extends Error {
  constructor(readonly schemas: string[], database: string) {
    super(`schema ${schemas.join(', ')} does not exist in database ${database}`);
  }
}

export interface InventoryOptions {
  /** Only these schemas, none for an empty list (default: every schema but PostgreSQL's own). */
  schemas?: string[];
  /** count(*) every table (a full scan each). */
  exactCounts?: boolean;
  /** Applied to function bodies before hashing (a drift expectation's scratch schema printed as the compared one). */
  printed?: (text: string) => string;
}

/**
 * Read the inventory in one REPEATABLE READ snapshot, so every part describes the same moment. The caller's
 * client is used as is: the function opens and closes its own transaction.
 */
export async function readInventory(client: pg.Client, options: InventoryOptions = {}): Promise<Inventory> {
  return inTransaction(client, async () => {
    // Every name printed schema-qualified, whatever the role's search_path.
    await client.query(`SELECT set_config('search_path', '', true)`);
    return readCatalog(client, options);
  }, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
}

/** The reading itself, in the caller's transaction; the caller empties search_path so names print qualified. */
export async function readCatalog(client: pg.Client, options: InventoryOptions): Promise<Inventory> {
  const q = queryOn(client);
  const [meta] = await q<{ server: string; database: string }>(
    `SELECT 'PostgreSQL ' || current_setting('server_version') AS server, current_database() AS database`);

  const schemas = await q<{ oid: number; name: string; owner: string; comment: string | null }>(
    `SELECT n.oid::int AS oid, n.nspname AS name, pg_get_userbyid(n.nspowner) AS owner, obj_description(n.oid, 'pg_namespace') AS comment
       FROM pg_namespace n
      WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
        AND ($1::text[] IS NULL OR n.nspname = ANY($1::text[]))
      ORDER BY n.nspname COLLATE "C"`, [options.schemas ?? null]);
  if (options.schemas) {
    const missing = options.schemas.filter((s) => !schemas.some((x) => x.name === s));
    if (missing.length) throw new MissingSchemaError(missing, meta!.database);
  }
  const nsp = schemas.map((s) => s.oid);

  const relations = await readRelations(q, new Map(schemas.map((s) => [s.oid, s.name])), options);
  const types = await readTypes(q, nsp);
  const functions = await readFunctions(q, nsp, options.printed);
  return {
    format: 'safeshift-inventory/1',
    server: meta!.server,
    database: meta!.database,
    schemas: schemas.map((s) => ({
      name: s.name,
      owner: s.owner,
      comment: s.comment,
      ...(relations.get(s.oid) ?? { tables: [], views: [], sequences: [] }),
      types: types.get(s.oid) ?? [],
      functions: functions.get(s.oid) ?? [],
    })),
    publications: await readPublications(q),
    extensions: await readExtensions(q),
    roles: await readRoles(q),
    defaultPrivileges: await readDefaultPrivileges(q, nsp),
  };
}
