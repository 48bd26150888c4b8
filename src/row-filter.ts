/**
 * The plan's row filter (`where:`): a boolean SQL expression over the source's columns that chooses the rows a
 * migration moves, so one shared table can be split into per-project tables (`public.stories` where
 * `project_id = '...'` into `project_<slug>.stories`), one project after the other.
 *
 * What respects it, and why that is enough for zero loss:
 * - the copy reads only matching rows; a chunk first deletes its whole key range from the target, so a row that
 *   left the filter since an earlier copy of the range goes with it;
 * - capture records a change when the old or the new row matches (`captureFilterSql`): a row moving into the
 *   project (UPDATE of project_id) arrives, a row moving out leaves; other projects' writes are not recorded;
 * - replay deletes the target rows of the changed keys and inserts the current source rows *that match*: a key
 *   whose row moved out of the filter is deleted and not inserted again, one that moved in is inserted;
 * - validation compares the filtered source with the target, range by range.
 *
 * Checked like the plan's other expressions (src/plan/expressions.ts: parsed by PostgreSQL's parser, only the
 * row's columns, allow-listed functions, no subqueries), and at preflight also by the catalog: it must be
 * boolean and immutable (an index predicate over a scratch copy of the source's columns: a filter depending on
 * time or settings would let rows drift in and out between copy, replay and validation) and must resolve with an
 * empty search_path (it runs inside the capture trigger, which has one).
 */
import type pg from 'pg';
import type { Plan } from './plan/schema';
import { expressionFunctionProblems, expressionProblems } from './plan/expressions';
import { displayName, qualified, quoteIdent, type TableRef } from './sql';
import { splitProblems } from './split-view';

/** The trigger that change capture installs on a source (src/capture.ts CAPTURE_TRIGGER; repeated to avoid a cycle). */
const CAPTURE_TRIGGER_NAME = 'safeshift_capture';

/**
 * ` AND (<where>)` to append to a WHERE over the source, or '' without a filter. The expression stands on lines
 * of its own, so a `--` comment in it cannot swallow what follows.
 */
export function andRowFilter(where: string | undefined): string {
  return where === undefined ? '' : ` AND (\n${where}\n)`;
}

/**
 * For the capture trigger: whether row `OLD` or `NEW` matches. The row is read as a relation of one row (`SELECT
 * NEW.*`), so the filter's bare column names resolve exactly as over the source table.
 */
export function rowMatchesSql(where: string, row: 'OLD' | 'NEW'): string {
  return `EXISTS (SELECT FROM (SELECT ${row}.*) s WHERE (\n${where}\n))`;
}

/**
 * A dollar-quote tag that does not occur in `text`, for a function body that embeds operator SQL: a fixed tag
 * could be closed by a string literal in the filter and the rest run as SQL.
 */
export function dollarTagFor(text: string, base = 'fn'): string {
  for (let i = 0; ; i++) {
    const tag = `$${base}${i === 0 ? '' : `_${i}`}$`;
    if (!text.includes(tag)) return tag;
  }
}

/** Static problems of the plan's `where:` (no database): one expression of the allowed kinds, named `where`. */
export async function rowFilterCodeProblems(where: string | undefined): Promise<string[]> {
  return where === undefined ? [] : expressionProblems(where, 'where');
}

/**
 * The catalog part, at preflight, in the caller's transaction (savepoints, rolled back): `where` is boolean,
 * immutable and resolves with an empty search_path over the source's columns; the functions it calls are allowed
 * (as for `columns`); no other migration captures changes of the source now (one capture per table: splits of one
 * table run one project after the other); and what a split needs of the catalog (src/split-view.ts).
 */
export async function rowFilterProblems(client: pg.Client, plan: Pick<Plan, 'where' | 'source' | 'target' | 'allowFunctions' | 'cutover'>, sourceOid: number, targetOid: number): Promise<string[]> {
  const { where } = plan;
  if (where === undefined) return [];
  // The functions it calls first, from a view that is never planned: CREATE INDEX plans the predicate, folding an
  // IMMUTABLE function with constant arguments (running it), so a mislabelled one would run before it is refused.
  const problems = await expressionFunctionProblems(client, where, plan.source, 'where', plan.allowFunctions ?? []);
  if (problems.length === 0) {
    await client.query('SAVEPOINT row_filter');
    try {
      const scratch = `safeshift_row_filter_${process.pid}`;
      await client.query(`CREATE TEMPORARY TABLE ${quoteIdent(scratch)} (safeshift_probe int, LIKE ${qualified(plan.source)})`);
      await client.query(`SELECT set_config('search_path', '', true)`);
      // An index predicate must be boolean, immutable and free of subqueries: PostgreSQL says which it is not.
      await client.query({ text: `CREATE INDEX ON pg_temp.${quoteIdent(scratch)} (safeshift_probe) WHERE (\n${where}\n)`, queryMode: 'extended' } as pg.QueryConfig);
    } catch (err) {
      problems.push(`where: ${where.trim()} does not work as a row filter over ${displayName(plan.source)} (it must be a boolean over the row's columns, immutable, ` +
        `with functions a bare search_path finds): ${(err as Error).message}`);
    } finally {
      await client.query('ROLLBACK TO SAVEPOINT row_filter');
      await client.query('RELEASE SAVEPOINT row_filter');
    }
  }
  problems.push(...(await captureConflicts(client, plan.source, sourceOid)), ...(await splitProblems(client, plan, sourceOid, targetOid)));
  return problems;
}

/** Another migration already captures changes of the source: its trigger would be replaced and its changes lost. */
async function captureConflicts(client: pg.Client, source: TableRef, sourceOid: number): Promise<string[]> {
  const { rows } = await client.query(`SELECT 1 FROM pg_trigger WHERE tgrelid = $1 AND tgname = $2`, [sourceOid, CAPTURE_TRIGGER_NAME]);
  return rows.length
    ? [`source: another migration is capturing changes of ${displayName(source)} (trigger ${CAPTURE_TRIGGER_NAME}); split one project at a time, after that migration has ended or passed its cutover`]
    : [];
}
