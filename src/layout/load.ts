/**
 * Reading a layout file: YAML or JSON, validated by the schema (src/layout/schema.ts), every problem naming its
 * field. `readLayout` checks the file only (no SQL parsing, synchronous): what fleets and splits need to list the
 * projects (`layoutProjects`). `checkLayout` (src/layout/model.ts) then expands and parses every statement.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { layoutSchema, projectSchemaName, type Layout } from './schema';

/** A layout of 10,000 projects is about 1.5 MiB of YAML; anything much bigger is not a layout. */
export const MAX_LAYOUT_BYTES = 8 * 1024 * 1024;

export class LayoutError extends Error {
  constructor(readonly path: string, readonly problems: string[]) {
    super(`${path}: ${problems.length} problem(s)\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
}

export interface LoadedLayout {
  layout: Layout;
  /** SHA-256 of the file's bytes (hex). */
  fileHash: string;
  path: string;
}

/** One project as the layout declares it, with the schema its tables live in. What fleets and splits iterate over. */
export interface LayoutProject {
  slug: string;
  id: string;
  /** `project_<slug>` (the layout's project.schema template with the slug put in). */
  schema: string;
  owner: string;
  region: string;
  tier?: string;
}

function fieldPath(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[') || '(layout)';
}

export function describeIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      const at = issue.path.length ? `${fieldPath(issue.path)}.` : '';
      return issue.keys.map((k) => `${at}${k}: unknown field`);
    }
    // A record's key refused by its own check: that check's message, not zod's generic one.
    if (issue.code === 'invalid_key' && issue.issues[0]) return [`${fieldPath(issue.path)}: ${issue.issues[0].message}`];
    return [`${fieldPath(issue.path)}: ${issue.message}`];
  });
}

/** Validate an already parsed layout (a workflow's input is checked again by the activities that use it). */
export function parseLayout(raw: unknown, where = '(layout)'): Layout {
  const parsed = layoutSchema.safeParse(raw);
  if (!parsed.success) throw new LayoutError(where, describeIssues(parsed.error.issues));
  return parsed.data;
}

/** Read and validate a layout file; never touches a database. Throws LayoutError listing every problem. */
export function readLayout(file: string): LoadedLayout {
  const path = resolve(file);
  let bytes: Buffer;
  try {
    const size = statSync(path).size;
    if (size > MAX_LAYOUT_BYTES) throw new Error(`the file is ${(size / 1024 / 1024).toFixed(1)} MiB; the limit is ${MAX_LAYOUT_BYTES / 1024 / 1024} MiB`);
    bytes = readFileSync(path);
  } catch (err) {
    throw new LayoutError(file, [`cannot read the layout: ${(err as Error).message}`]);
  }
  let raw: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    raw = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text, { maxAliasCount: 100 });
  } catch (err) {
    throw new LayoutError(file, [`not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'} (UTF-8): ${(err as Error).message}`]);
  }
  const reserved = reservedKeys(raw, []);
  if (reserved.length) throw new LayoutError(file, reserved);
  return { layout: parseLayout(raw, file), fileHash: createHash('sha256').update(bytes).digest('hex'), path };
}

/** Keys JavaScript objects give a meaning of their own: refused wherever they appear, rather than silently lost. */
function reservedKeys(value: unknown, path: (string | number)[]): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => reservedKeys(v, [...path, i]));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => ['__proto__', 'constructor', 'prototype'].includes(k)
    ? [`${fieldPath([...path, k])}: reserved key, not allowed`] : reservedKeys(v, [...path, k]));
}

/** The projects of a parsed layout, each with its schema. */
export function projectsOf(layout: Layout): LayoutProject[] {
  return layout.projects.map((p) => ({
    slug: p.slug, id: p.id, schema: projectSchemaName(layout.project.schema, p.slug), owner: p.owner, region: p.region,
    ...(p.tier !== undefined ? { tier: p.tier } : {}),
  }));
}

/**
 * The projects a layout file declares (slug, id, schema, owner, region, tier), in file order. For fleets and
 * splits: validates the file (throws LayoutError naming each problem) but does not parse its SQL.
 */
export function layoutProjects(file: string): LayoutProject[] {
  return projectsOf(readLayout(file).layout);
}
