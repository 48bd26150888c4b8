/**
 * Functions with SQL-standard bodies (BEGIN ATOMIC) that read the table: their body is bound by OID. Readers:
 * CREATE OR REPLACE from the captured definition (which names the live name) keeps the function's OID. Functions
 * with string bodies look names up when they run, so a rename leaves nothing behind (one whose signature uses the
 * table's row type is recreated by row-type-functions.ts).
 */
import { withoutSemicolon, type CatalogQuery, type Mover } from './mover';
import { ROW_TYPE_FUNCTION } from './row-type-functions';

export interface BoundFunction {
  signature: string;
  definition: string;
}

export interface CapturedFunctions {
  /** Functions with SQL-standard bodies (BEGIN ATOMIC) that read the table: CREATE OR REPLACE keeps their OID. */
  functions: BoundFunction[];
}

export async function captureFunctions(q: CatalogQuery): Promise<CapturedFunctions> {
  const functions = await q<BoundFunction>(
    `SELECT DISTINCT p.oid::regprocedure::text AS signature, pg_get_functiondef(p.oid) AS definition
       FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
      WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1
        AND p.prosqlbody IS NOT NULL
        -- One whose result or argument is the row type cannot be replaced in place: row-type-functions.ts.
        AND NOT ${ROW_TYPE_FUNCTION('p.oid')}
      ORDER BY 1`);
  return { functions };
}

export async function moveFunctions(m: Mover, functions: BoundFunction[]): Promise<void> {
  for (const f of functions) {
    await m.object(`function ${f.signature}`, async (run) => { await run(withoutSemicolon(f.definition)); });
  }
}

/** `readTarget`: what the functions will read, as the approver reads it. */
export function describeFunctions(functions: BoundFunction[], readTarget: string): string[] {
  return functions.map((f) => `function ${f.signature}: replaced to read ${readTarget}`);
}
