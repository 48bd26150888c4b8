/**
 * A drift expectation given as an inventory JSON (`safeshift inventory --json`), checked for what the
 * comparison reads. Kinds documented after a file was written (types, functions, partitions, a materialized
 * view's indexes, extensions, roles, default privileges) may be absent: absent is "not described", not "none".
 */
import { z } from 'zod';
import type { Expectation } from './drift-common';
import { ExpectationError } from './drift-sql';

const grants = z.array(z.looseObject({ grantee: z.string(), privileges: z.array(z.string()) }));
const index = z.looseObject({ name: z.string(), definition: z.string(), constraint: z.string().nullable() });
const column = z.looseObject({ name: z.string(), type: z.string(), notNull: z.boolean(), default: z.string().nullable(), generated: z.string().nullable(), identity: z.string().nullable(), collation: z.string().nullable() });

const table = z.looseObject({
  name: z.string(),
  kind: z.string(),
  owner: z.string(),
  partitioning: z.looseObject({ key: z.string() }).nullable().optional(),
  partitionOf: z.looseObject({ parent: z.string(), bound: z.string() }).nullable().optional(),
  columns: z.array(column),
  constraints: z.array(z.looseObject({ name: z.string(), type: z.string(), definition: z.string() })),
  indexes: z.array(index),
  triggers: z.array(z.looseObject({ name: z.string(), definition: z.string(), enabled: z.string() })),
  rls: z.looseObject({ enabled: z.boolean() }),
  policies: z.array(z.looseObject({ name: z.string(), command: z.string(), permissive: z.boolean(), roles: z.array(z.string()), using: z.string().nullable(), withCheck: z.string().nullable() })),
  grants,
});

const view = z.looseObject({ name: z.string(), kind: z.string(), owner: z.string(), definition: z.string(), indexes: z.array(index).optional(), grants });

const sequence = z.looseObject({
  name: z.string(), type: z.string(), start: z.string(), increment: z.string(), min: z.string(), max: z.string(), cache: z.string(),
  cycle: z.boolean(), ownedBy: z.string().nullable(),
});

const typeBase = { name: z.string(), owner: z.string() };
const type = z.discriminatedUnion('kind', [
  z.looseObject({ ...typeBase, kind: z.literal('enum'), labels: z.array(z.string()) }),
  z.looseObject({
    ...typeBase, kind: z.literal('domain'), baseType: z.string(), default: z.string().nullable(), notNull: z.boolean(), collation: z.string().nullable(),
    checks: z.array(z.looseObject({ name: z.string(), definition: z.string() })),
  }),
  z.looseObject({ ...typeBase, kind: z.literal('composite'), fields: z.array(z.looseObject({ name: z.string(), type: z.string(), collation: z.string().nullable() })) }),
  z.looseObject({ ...typeBase, kind: z.literal('range'), subtype: z.string() }),
]);

const fn = z.looseObject({
  name: z.string(), kind: z.string(), signature: z.string(), arguments: z.string(), result: z.string().nullable(), language: z.string(),
  volatility: z.string(), strict: z.boolean(), securityDefiner: z.boolean(), parallel: z.string(), config: z.array(z.string()),
  bodySha256: z.string().nullable(), owner: z.string(), grants,
});

const inventoryFile = z.looseObject({
  format: z.literal('safeshift-inventory/1'),
  schemas: z.array(z.looseObject({
    name: z.string(),
    owner: z.string(),
    tables: z.array(table),
    views: z.array(view),
    sequences: z.array(sequence),
    types: z.array(type).optional(),
    functions: z.array(fn).optional(),
  })),
  publications: z.array(z.looseObject({ name: z.string(), allTables: z.boolean(), operations: z.array(z.string()), tables: z.array(z.string()) })).optional(),
  extensions: z.array(z.looseObject({ name: z.string(), version: z.string(), schema: z.string() })).optional(),
  roles: z.array(z.looseObject({
    name: z.string(), login: z.boolean(), superuser: z.boolean(), createRole: z.boolean(), createDb: z.boolean(), replication: z.boolean(),
    bypassRls: z.boolean(), inherit: z.boolean(), connectionLimit: z.number(),
    memberOf: z.array(z.looseObject({ role: z.string(), admin: z.boolean(), inherit: z.boolean().nullable(), set: z.boolean().nullable() })),
  })).optional(),
  defaultPrivileges: z.array(z.looseObject({ role: z.string(), schema: z.string().nullable(), objects: z.string(), grants })).optional(),
});

export function expectationFromJson(file: string, text: string): Expectation {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ExpectationError(`${file}: not JSON: ${(err as Error).message}`);
  }
  const parsed = inventoryFile.safeParse(raw);
  if (!parsed.success) {
    throw new ExpectationError(parsed.error.issues.map((i) => `${file}: ${i.path.join('.') || '(top)'}: ${i.message}`).join('\n'));
  }
  // Checked above for every field the comparison reads; the rest is carried as is.
  return { ...(parsed.data as unknown as Omit<Expectation, 'access'>), access: true };
}
