/**
 * The table's triggers (not safeshift's own change-capture triggers). The captured definition says ON <live
 * name>, which is the new table once it has the live name; created unless the new table defines one of that name,
 * with the old trigger's enabled state and comment.
 */
import { quoteIdent, quoteLiteral } from '../sql';
import { withoutSemicolon, type CatalogQuery, type MoveTarget, type Mover } from './mover';

const TRIGGER_STATES: Record<string, string> = { D: 'DISABLE TRIGGER', R: 'ENABLE REPLICA TRIGGER', A: 'ENABLE ALWAYS TRIGGER' };
/** safeshift's own triggers (change capture, the write guard of src/write-guard.ts): never carried to the new table. */
const OWN_TRIGGER_PREFIX = 'safeshift_';

export interface BoundTrigger {
  name: string;
  definition: string;
  enabled: string;
  comment: string | null;
}

export interface CapturedTriggers {
  triggers: BoundTrigger[];
}

export async function captureTriggers(q: CatalogQuery): Promise<CapturedTriggers> {
  const triggers = await q<BoundTrigger>(
    `SELECT t.tgname AS name, pg_get_triggerdef(t.oid) AS definition, t.tgenabled::text AS enabled,
            obj_description(t.oid, 'pg_trigger') AS comment
       FROM pg_trigger t WHERE t.tgrelid = $1 AND NOT t.tgisinternal AND t.tgparentid = 0 ORDER BY t.tgname`);
  return { triggers: triggers.filter((t) => !t.name.startsWith(OWN_TRIGGER_PREFIX)) };
}

export async function moveTriggers(m: Mover, triggers: BoundTrigger[], to: MoveTarget): Promise<void> {
  const existing = new Set((await m.rows<{ name: string }>(`SELECT tgname AS name FROM pg_trigger WHERE tgrelid = $1`, [to.oid])).map((r) => r.name));
  for (const t of triggers) {
    const label = `trigger ${t.name} on ${to.shown}`;
    if (t.name.startsWith(OWN_TRIGGER_PREFIX)) continue;
    if (existing.has(t.name)) { m.skipped.push(`${label}: the new table defines its own`); continue; }
    await m.object(label, async (run) => {
      await run(withoutSemicolon(t.definition));
      const state = TRIGGER_STATES[t.enabled];
      if (state) await run(`ALTER TABLE ${to.sql} ${state} ${quoteIdent(t.name)}`);
      if (t.comment !== null) await run(`COMMENT ON TRIGGER ${quoteIdent(t.name)} ON ${to.sql} IS ${quoteLiteral(t.comment)}`);
    });
  }
}

export function describeTriggers(triggers: BoundTrigger[]): string[] {
  return triggers.map((t) => {
    const state = { O: 'enabled', D: 'disabled', R: 'replica', A: 'always' }[t.enabled] ?? t.enabled;
    return `trigger ${t.name} (${state}): created on the new table unless it has one of that name`;
  });
}
