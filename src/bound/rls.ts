/**
 * Row-level security flags (pg_class.relrowsecurity, relforcerowsecurity): the new table gets exactly the flags the
 * old table had. The policies are in policies.ts.
 */
import type { MoveTarget, Mover, TableRow } from './mover';

export interface CapturedRowSecurity {
  rowSecurity: { enabled: boolean; forced: boolean };
}

export function captureRowSecurity(rel: TableRow): CapturedRowSecurity {
  return { rowSecurity: { enabled: rel.rls, forced: rel.force } };
}

export async function moveRowSecurity(m: Mover, captured: CapturedRowSecurity, to: MoveTarget): Promise<void> {
  // Exactly the old table's flags: the new table was sealed with row-level security on (src/seal.ts), and a
  // target DDL that changes them changes who sees what (the access matrix would refuse it anyway).
  const { enabled, forced } = captured.rowSecurity;
  if (enabled !== to.row.rls) {
    await m.object(`row level security on ${to.shown}: ${enabled ? 'enabled' : 'disabled'} as on the old table`, async (run) => {
      await run(`ALTER TABLE ${to.sql} ${enabled ? 'ENABLE' : 'DISABLE'} ROW LEVEL SECURITY`);
    });
  }
  if (forced !== to.row.force) {
    await m.object(`forced row level security on ${to.shown}: ${forced ? 'forced' : 'not forced'} as on the old table`, async (run) => {
      await run(`ALTER TABLE ${to.sql} ${forced ? 'FORCE' : 'NO FORCE'} ROW LEVEL SECURITY`);
    });
  }
}

export function describeRowSecurity(b: CapturedRowSecurity): string[] {
  const lines: string[] = [];
  if (b.rowSecurity.enabled) lines.push('row level security: enabled on the new table');
  if (b.rowSecurity.forced) lines.push('row level security forced: forced on the new table');
  return lines;
}
