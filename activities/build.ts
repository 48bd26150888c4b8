/**
 * Phase 5, build: the target's plain secondary indexes, dropped when prepare created it, are built now that the
 * rows are in (one sort per index instead of an index update per row). Each index is built and marked in
 * `safeshift.deferred_indexes` in one transaction, so a retried attempt builds only what is missing. No
 * compensation of its own: dropping the target (prepare) undoes it.
 */
import { BULK_LIMITS, inTransaction } from '../src/db';
import { quoteLiteral, qualified, type TableRef } from '../src/sql';
import { heartbeating, withDatabase, type MigrationRef } from './support';

export interface BuildInput extends MigrationRef {
  target: TableRef;
  targetOid: number;
}

export async function buildIndexes(input: BuildInput): Promise<{ name: string; ms: number }[]> {
  return withDatabase(input, (client) => heartbeating(async () => {
    const { rows } = await client.query<{ name: string; definition: string; comment: string | null }>(
      `SELECT name, definition, comment FROM safeshift.deferred_indexes
        WHERE run_id = $1 AND target_oid = $2 AND built_at IS NULL ORDER BY name`, [input.runId, input.targetOid]);
    const built: { name: string; ms: number }[] = [];
    for (const ix of rows) {
      const started = Date.now();
      await inTransaction(client, async () => {
        // The definition is PostgreSQL's own (pg_get_indexdef of the index the plan's DDL made), schema-qualified.
        await client.query(ix.definition);
        if (ix.comment !== null) await client.query(`COMMENT ON INDEX ${qualified({ schema: input.target.schema, name: ix.name })} IS ${quoteLiteral(ix.comment)}`);
        await client.query(`UPDATE safeshift.deferred_indexes SET built_at = clock_timestamp() WHERE run_id = $1 AND target_oid = $2 AND name = $3`,
          [input.runId, input.targetOid, ix.name]);
      });
      built.push({ name: ix.name, ms: Date.now() - started });
    }
    return built;
  }), BULK_LIMITS);
}
