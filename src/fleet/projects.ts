/**
 * `--projects`: a comma list of slugs, or a SQL query returning slug (and id, region, ... as further columns). A
 * query is parsed by PostgreSQL's parser and must be one plain SELECT (no DML, also not in a WITH; no SELECT INTO;
 * no FOR UPDATE), then runs in a READ ONLY transaction, always rolled back, with a statement timeout.
 */
import { existsSync } from 'node:fs';
import type pg from 'pg';
import { layoutProjects } from '../layout/load';
import { withClient } from '../db';
import { throttleQueryProblems } from '../throttle';
import type { ProjectMeta } from './spec';
import { FleetInputError, KEY_PATTERN, projectProblems } from './waves';

const QUERY_TIMEOUT_MS = 30_000;
export const MAX_PROJECTS = 100_000;

export function looksLikeSql(arg: string): boolean {
  return /^\s*(select|with|values|table)\b/i.test(arg);
}

/** A layout file (src/layout): its projects, with every metadata field the layout gives them. */
export function isLayoutFile(arg: string): boolean {
  return /\.ya?ml$/i.test(arg.trim()) && existsSync(arg.trim());
}

export function projectsFromLayout(file: string): ProjectMeta[] {
  let fromLayout;
  try {
    fromLayout = layoutProjects(file.trim());
  } catch (err) {
    throw new FleetInputError([`--projects: ${err instanceof Error ? err.message : String(err)}`]);
  }
  const projects = fromLayout.map(({ slug, id, owner, region, tier }) => ({ slug, id, owner, region, ...(tier ? { tier } : {}) }));
  const problems = projectProblems(projects);
  if (problems.length) throw new FleetInputError(problems);
  return projects;
}

/** A comma list of slugs. */
export function projectsFromList(arg: string): ProjectMeta[] {
  const projects = arg.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map((slug) => ({ slug }));
  const problems = projectProblems(projects);
  if (problems.length) throw new FleetInputError(problems);
  return projects;
}

/** Rows of the query as projects: `slug` required, every other non-null column as text metadata. */
export function projectsFromRows(fields: string[], rows: unknown[][]): ProjectMeta[] {
  if (!fields.includes('slug')) throw new FleetInputError([`--projects: the query must return a column named slug (it returns ${fields.join(', ') || 'no columns'})`]);
  const bad = fields.filter((f) => !KEY_PATTERN.test(f));
  if (bad.length) throw new FleetInputError([`--projects: column name(s) ${bad.map((b) => JSON.stringify(b)).join(', ')} are not plain lower-case names (use AS)`]);
  if (new Set(fields).size !== fields.length) throw new FleetInputError(['--projects: the query returns a column name twice']);
  if (rows.length > MAX_PROJECTS) throw new FleetInputError([`--projects: the query returns more than ${MAX_PROJECTS} rows`]);
  const projects = rows.map((row) => {
    const p: Record<string, string> = {};
    fields.forEach((f, k) => {
      const v = row[k];
      if (v !== null && v !== undefined) p[f] = v instanceof Date ? v.toISOString() : String(v);
    });
    return p as ProjectMeta;
  });
  const problems = projectProblems(projects);
  if (problems.length) throw new FleetInputError(problems);
  return projects;
}

/** Run the projects query READ ONLY. */
export async function queryProjects(url: string, sql: string): Promise<ProjectMeta[]> {
  const problems = await throttleQueryProblems(sql, '--projects');
  if (problems.length) throw new FleetInputError(problems);
  return withClient(url, async (client: pg.Client) => {
    // One round trip to open it: the timeout is a constant of ours, not a value from outside.
    await client.query(`BEGIN READ ONLY; SET LOCAL statement_timeout = '${QUERY_TIMEOUT_MS}ms'`);
    try {
      const r = await client.query({ text: sql, queryMode: 'extended', rowMode: 'array' } as pg.QueryArrayConfig);
      return projectsFromRows(r.fields.map((f) => f.name), r.rows as unknown[][]);
    } catch (err) {
      if (err instanceof FleetInputError) throw err;
      throw new FleetInputError([`--projects: the query failed: ${(err as Error).message}`]);
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
    }
  }, 'safeshift fleet projects');
}
