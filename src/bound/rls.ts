/**
 * Row-level security flags (pg_class.relrowsecurity, relforcerowsecurity): the flags the old table had are
 * turned on on the new table, never off (the target DDL may want them). The policies are in policies.ts.
 */
import type { MoveTarget, Mover, TableRow } from './mover';

export interface CapturedRowSecurity {
  rowSecurity: { enabled: boolean; forced: boolean };
}

export function captureRowSecurity(rel: TableRow): CapturedRowSecurity {
  return { rowSecurity: { enabled: rel.rls, forced: rel.force } };
}

export async function moveRowSecurity(m: Mover, captured: CapturedRowSecurity, to: MoveTarget): Promise<void> {
  if (captured.rowSecurity.enabled && !to.row.rls) {
    await m.object(`row level security on ${to.shown}`, async (run) => { await run(`ALTER TABLE ${to.sql} ENABLE ROW LEVEL SECURITY`); });
  }
  if (captured.rowSecurity.forced && !to.row.force) {
    await m.object(`forced row level security on ${to.shown}`, async (run) => { await run(`ALTER TABLE ${to.sql} FORCE ROW LEVEL SECURITY`); });
  }
}

export function describeRowSecurity(b: CapturedRowSecurity): string[] {
  const lines: string[] = [];
  if (b.rowSecurity.enabled) lines.push('row level security: enabled on the new table');
  if (b.rowSecurity.forced) lines.push('row level security forced: forced on the new table');
  return lines;
}
