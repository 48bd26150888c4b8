import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { parseIdent } from '../sql';
import { targetDdlProblems } from '../target-ddl';
import { classifyAlter } from '../in-place';
import { rowFilterCodeProblems } from '../row-filter';
import { expressionProblems, parserReady } from './expressions';
import { alterCodeProblems } from './ddl-code';
import { planSchema, type Plan } from './schema';

/** Largest plan (and createFile) accepted: a plan is a page of YAML; a bigger file is refused before it is parsed. */
export const MAX_PLAN_BYTES = 1024 * 1024;

/**
 * Deepest nesting a plan file may have. A plan is a handful of levels deep (approvals.cutover.approvers[0]); a file
 * nested thousands deep would only exhaust the stack of the parser or of the checks that walk it (a crash, not a
 * refusal). Checked on the text before parsing (brackets) and on the parsed value (block YAML nests by indent).
 */
const MAX_PLAN_DEPTH = 32;

/** YAML aliases expanded at most (the yaml library's own default, stated): a billion-laughs file is refused at once. */
const MAX_YAML_ALIASES = 100;

/**
 * Keys that JavaScript objects give a meaning of their own: `__proto__` would be dropped on parsing (it sets the
 * prototype), `constructor` and `prototype` shadow or are shadowed by Object.prototype. They are refused, named,
 * wherever they appear, rather than silently lost or mixed up; a column so named is renamed before the migration.
 */
const RESERVED_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

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
    bytes = readCapped(path, 'plan file');
  } catch (err) {
    throw new PlanError(file, [(err as Error).message]);
  }
  let raw: unknown;
  try {
    const text = utf8Text(bytes, 'plan file');
    if (bracketDepth(text) > MAX_PLAN_DEPTH) throw new PlanFileError(`plan file nests [ ] or { } more than ${MAX_PLAN_DEPTH} levels deep`);
    raw = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text, { maxAliasCount: MAX_YAML_ALIASES });
  } catch (err) {
    if (err instanceof PlanFileError) throw new PlanError(file, [err.message]);
    throw new PlanError(file, [`not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`]);
  }
  return planFromRaw(file, raw, bytes, env);
}

/** The checks and normalisation of loadPlan on an already parsed file (a fleet's template, expanded per project). */
export function planFromRaw(file: string, raw: unknown, bytes: Buffer, env: NodeJS.ProcessEnv | null = process.env): LoadedPlan {
  const path = resolve(file);
  if (nestingDepth(raw) > MAX_PLAN_DEPTH) throw new PlanError(file, [`(plan): nested more than ${MAX_PLAN_DEPTH} levels deep`]);
  const reserved = reservedKeys(raw, []);
  if (reserved.length) throw new PlanError(file, reserved);
  const parsed = planSchema.safeParse(raw);
  const problems = parsed.success ? [] : describeIssues(parsed.error.issues);
  const hash = createHash('sha256').update(bytes);
  let plan: Plan | undefined;
  if (parsed.success) {
    const { create, createFile, columns, reverse, ...rest } = parsed.data;
    // An in-place plan (alter) has no target: its table stays where it is (a RENAME TO is one of its changes).
    plan = { ...rest, target: rest.target ?? rest.source, createFile, columns: {}, reverse: {} };
    for (const [column, expr] of Object.entries(columns)) plan.columns[parseIdent(column) ?? column] = expr;
    for (const [column, expr] of Object.entries(reverse)) plan.reverse[parseIdent(column) ?? column] = expr;
    if (create !== undefined) plan.createSql = create;
    if (createFile !== undefined) {
      const ddlPath = resolve(dirname(path), createFile);
      try {
        const ddl = readCapped(ddlPath, createFile);
        hash.update(ddl);
        plan.createSql = utf8Text(ddl, createFile);
        if (plan.createSql.trim() === '') problems.push(`createFile: ${createFile} is empty`);
      } catch (err) {
        problems.push(`createFile: ${(err as Error).message}`);
      }
    }
    // Never the value in a message: the variable may hold a password, or be another secret altogether.
    if (env && !env[plan.database]) problems.push(`database: environment variable ${plan.database} is not set`);
    else if (env && !/^postgres(ql)?:\/\//.test(env[plan.database]!)) {
      problems.push(`database: environment variable ${plan.database} does not hold a postgres:// or postgresql:// URL (its value is not shown)`);
    }
  }
  if (problems.length || !plan) throw new PlanError(file, problems);
  return { plan, hash: hash.digest('hex'), path };
}

/** A problem with the file itself (size, encoding), reported as is. */
class PlanFileError extends Error {}

/** The file's bytes, refused before reading past MAX_PLAN_BYTES. */
function readCapped(path: string, what: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new Error(`cannot read ${what}: ${(err as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size > MAX_PLAN_BYTES) {
      throw new PlanFileError(`${what} is ${(size / 1024 / 1024).toFixed(1)} MiB; the limit is ${MAX_PLAN_BYTES / 1024 / 1024} MiB`);
    }
    // Read one byte more than the limit: a file that grows while read (or a FIFO) is refused all the same.
    const buf = Buffer.alloc(MAX_PLAN_BYTES + 1);
    let n = 0;
    for (let r = 1; r > 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, null);
    if (n > MAX_PLAN_BYTES) throw new PlanFileError(`${what} is larger than the limit of ${MAX_PLAN_BYTES / 1024 / 1024} MiB`);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** The bytes as UTF-8 text; any other byte sequence is refused at its offset, never replaced. */
function utf8Text(bytes: Buffer, what: string): string {
  const bad = invalidUtf8Offset(bytes);
  if (bad !== undefined) throw new PlanFileError(`${what} is not UTF-8: invalid byte 0x${bytes[bad]!.toString(16).padStart(2, '0')} at byte offset ${bad}`);
  return bytes.toString('utf8');
}

/** Offset of the first byte that does not start well-formed UTF-8 (RFC 3629), or undefined. */
export function invalidUtf8Offset(b: Uint8Array): number | undefined {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) { i += 1; continue; }
    let need: number; let min: number; let max = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) { need = 1; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { need = 2; min = c === 0xe0 ? 0xa0 : 0x80; if (c === 0xed) max = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { need = 3; min = c === 0xf0 ? 0x90 : 0x80; if (c === 0xf4) max = 0x8f; }
    else return i;
    for (let k = 1; k <= need; k += 1) {
      const d = b[i + k];
      // Cut short, or a byte that cannot continue it: the sequence is malformed from its first byte.
      if (d === undefined || d < (k === 1 ? min : 0x80) || d > (k === 1 ? max : 0xbf)) return i;
    }
    i += need + 1;
  }
  return undefined;
}

/** Deepest run of unclosed [ or { in the text (quotes not considered: a plan has no reason to nest either deeply). */
function bracketDepth(text: string): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) max = Math.max(max, ++depth);
    else if ((c === 0x5d || c === 0x7d) && depth > 0) depth -= 1;
  }
  return max;
}

/** How deep objects and arrays nest in a parsed value, without recursion (the check must not overflow itself). */
function nestingDepth(value: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    max = Math.max(max, d + 1);
    if (max > MAX_PLAN_DEPTH) return max;
    for (const child of Object.values(v)) stack.push([child, d + 1]);
  }
  return max;
}

/** Every key of the parsed file named in RESERVED_KEYS, with its path. */
function reservedKeys(value: unknown, path: string[]): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => reservedKeys(v, [...path.slice(0, -1), `${path.at(-1) ?? ''}[${i}]`]));
  if (value === null || typeof value !== 'object') return [];
  return Object.getOwnPropertyNames(value).flatMap((k) => [
    ...(RESERVED_KEYS.has(k) ? [`${[...path, k].join('.')}: the key ${k} is reserved (JavaScript gives it a meaning of its own); rename the column or key`] : []),
    ...reservedKeys((value as Record<string, unknown>)[k], [...path, k]),
  ]);
}

/**
 * The plan's SQL checked as code, without a database: each columns and reverse expression (src/plan/expressions.ts),
 * the target DDL's statements, the objects they touch (src/target-ddl.ts) and what their expressions call
 * (src/plan/ddl-code.ts), and an in-place plan's alter. Problems name the field.
 */
export async function planCodeProblems(plan: Plan): Promise<string[]> {
  await parserReady();
  const problems: string[] = [];
  for (const field of ['columns', 'reverse'] as const) {
    for (const [column, expr] of Object.entries(plan[field])) problems.push(...(await expressionProblems(expr, `${field}.${column}`)));
  }
  problems.push(...(await rowFilterCodeProblems(plan.where)));
  if (plan.createSql) problems.push(...(await targetDdlProblems(plan.createSql, plan.createFile ? 'createFile' : 'create', plan.target)));
  if (plan.alter !== undefined) problems.push(...(await classifyAlter(plan.alter, plan.source)).problems, ...(await alterCodeProblems(plan.alter)));
  return problems;
}

/** loadPlan, then planCodeProblems: what `plan validate --offline` checks. Throws PlanError with every problem. */
export async function loadCheckedPlan(file: string, env: NodeJS.ProcessEnv | null = process.env): Promise<LoadedPlan> {
  const loaded = loadPlan(file, env);
  const problems = await planCodeProblems(loaded.plan);
  if (problems.length) throw new PlanError(file, problems);
  return loaded;
}
