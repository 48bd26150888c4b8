/** `safeshift inventory` and `safeshift drift`: read-only, they never change the database. */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { withClient } from '../db';
import { compareInventories, ExpectationError, inventoryFromSql, type DriftItem } from '../drift';
import { MissingSchemaError, readInventory, type Inventory } from '../inventory';
import { inventoryMarkdown } from '../inventory-markdown';
import { CliError, connectionString, EXIT_FAILED, EXIT_OK } from './exit';

interface DatabaseOption {
  /** Name of the environment variable holding the connection string. */
  database: string;
}

export async function showInventory(opts: DatabaseOption & { json?: boolean; schema?: string[]; exactCounts?: boolean }, print: (line: string) => void): Promise<number> {
  const inventory = await withClient(connectionString(opts.database), (client) =>
    readInventory(client, { schemas: opts.schema, exactCounts: opts.exactCounts }).catch((err: unknown) => {
      if (err instanceof MissingSchemaError) throw new CliError(`--schema: ${err.message}`);
      throw err;
    }), 'safeshift inventory');
  print(opts.json ? JSON.stringify(inventory, null, 2) : inventoryMarkdown(inventory));
  return EXIT_OK;
}

/** Enough structure to compare with; the rest of an inventory is carried as is. */
const column = z.looseObject({ name: z.string(), type: z.string(), notNull: z.boolean(), default: z.string().nullable(), generated: z.string().nullable(), identity: z.string().nullable(), collation: z.string().nullable() });
const tableDoc = z.looseObject({
  name: z.string(),
  columns: z.array(column),
  constraints: z.array(z.looseObject({ name: z.string(), type: z.string(), definition: z.string() })),
  indexes: z.array(z.looseObject({ name: z.string(), definition: z.string() })),
  rls: z.looseObject({ enabled: z.boolean() }),
  policies: z.array(z.looseObject({ name: z.string(), command: z.string(), permissive: z.boolean(), roles: z.array(z.string()), using: z.string().nullable(), withCheck: z.string().nullable() })),
});
const inventoryFile = z.looseObject({
  format: z.literal('safeshift-inventory/1'),
  schemas: z.array(z.looseObject({
    name: z.string(),
    tables: z.array(tableDoc),
    views: z.array(z.looseObject({ name: z.string(), kind: z.string(), definition: z.string() })),
  })),
});

function expectationFromJson(file: string, text: string): Inventory {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CliError(`${file}: not JSON: ${(err as Error).message}`);
  }
  const parsed = inventoryFile.safeParse(raw);
  if (!parsed.success) {
    throw new CliError(parsed.error.issues.map((i) => `${file}: ${i.path.join('.') || '(top)'}: ${i.message}`).join('\n'));
  }
  return parsed.data as unknown as Inventory;
}

function renderDrift(items: DriftItem[]): string[] {
  if (!items.length) return ['no drift: the live database has what the expectation describes'];
  return [`${items.length} difference(s) between the expectation and the live database:`, ...items.map((d) => `  ${d.kind.padEnd(9)} ${d.object}: ${d.detail}`)];
}

export async function showDrift(opts: DatabaseOption & { expect: string; schema: string; json?: boolean }, print: (line: string) => void): Promise<number> {
  let text: string;
  try {
    text = readFileSync(opts.expect, 'utf8');
  } catch (err) {
    throw new CliError(`--expect: cannot read ${opts.expect}: ${(err as Error).message}`);
  }
  const items = await withClient(connectionString(opts.database), async (client) => {
    let expected: Inventory;
    try {
      expected = /\.json$/i.test(opts.expect) ? expectationFromJson(opts.expect, text) : await inventoryFromSql(client, text, opts.schema, opts.expect);
    } catch (err) {
      if (err instanceof ExpectationError) throw new CliError(err.message);
      throw err;
    }
    // Schemas the expectation has and the database lacks are left out here; the comparison reports them missing.
    const present = await client.query<{ name: string }>(`SELECT nspname AS name FROM pg_namespace WHERE nspname = ANY($1::text[])`, [expected.schemas.map((s) => s.name)]);
    const live: Inventory = present.rows.length
      ? await readInventory(client, { schemas: present.rows.map((r) => r.name) })
      : { ...expected, schemas: [] };
    return compareInventories(expected, live);
  }, 'safeshift drift');
  if (opts.json) print(JSON.stringify({ drift: items.length > 0, differences: items }, null, 2));
  else renderDrift(items).forEach((l) => print(l));
  return items.length ? EXIT_FAILED : EXIT_OK;
}
