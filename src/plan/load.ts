import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { parseIdent } from '../sql';
import { planSchema, type Plan } from './schema';

export interface LoadedPlan {
  plan: Plan;
  /** SHA-256 of the plan file bytes and the target DDL file, hex; approvals are bound to it. */
  hash: string;
  path: string;
}

export class PlanError extends Error {
  constructor(readonly path: string, readonly problems: string[]) {
    super(`${path}: ${problems.length} problem(s)\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
}

function fieldPath(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[') || '(plan)';
}

function describeIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      const at = issue.path.length ? `${fieldPath(issue.path)}.` : '';
      return issue.keys.map((k) => `${at}${k}: unknown field`).join('\n');
    }
    return `${fieldPath(issue.path)}: ${issue.message}`;
  }).flatMap((l) => l.split('\n'));
}

/**
 * Read, parse and validate a plan file. Never touches a database. `env` is consulted only to report a
 * `database` variable that is not set (null: do not check, e.g. validating a plan on a laptop).
 */
export function loadPlan(file: string, env: NodeJS.ProcessEnv | null = process.env): LoadedPlan {
  const path = resolve(file);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new PlanError(file, [`cannot read plan file: ${(err as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = path.endsWith('.json') ? JSON.parse(bytes.toString('utf8')) : parseYaml(bytes.toString('utf8'));
  } catch (err) {
    throw new PlanError(file, [`not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`]);
  }
  const parsed = planSchema.safeParse(raw);
  const problems = parsed.success ? [] : describeIssues(parsed.error.issues);
  const hash = createHash('sha256').update(bytes);
  let plan: Plan | undefined;
  if (parsed.success) {
    const { create, createFile, columns, reverse, ...rest } = parsed.data;
    plan = { ...rest, createFile, columns: {}, reverse: {} };
    for (const [column, expr] of Object.entries(columns)) plan.columns[parseIdent(column) ?? column] = expr;
    for (const [column, expr] of Object.entries(reverse)) plan.reverse[parseIdent(column) ?? column] = expr;
    if (create !== undefined) plan.createSql = create;
    if (createFile !== undefined) {
      const ddlPath = resolve(dirname(path), createFile);
      try {
        const ddl = readFileSync(ddlPath);
        hash.update(ddl);
        plan.createSql = ddl.toString('utf8');
        if (plan.createSql.trim() === '') problems.push(`createFile: ${createFile} is empty`);
      } catch (err) {
        problems.push(`createFile: cannot read ${createFile}: ${(err as Error).message}`);
      }
    }
    if (env && !env[plan.database]) problems.push(`database: environment variable ${plan.database} is not set`);
  }
  if (problems.length || !plan) throw new PlanError(file, problems);
  return { plan, hash: hash.digest('hex'), path };
}
