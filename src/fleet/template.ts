/**
 * Plan templates: `{{project.slug}}`, `{{project.id}}` and any other project metadata (`{{project.region}}`),
 * expanded per project into the parsed plan tree BEFORE the plan is checked, so each project's plan passes every
 * check a hand-written plan passes (identifiers, target DDL, expressions). The file is parsed first and the values
 * land inside strings only, so a value can never add a key or change the file's structure; and only where the
 * result is checked as plan text (names, tables, key, DDL, expressions, row filter): never in who approves, which
 * database, or the settings.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { MAX_PLAN_BYTES, planCodeProblems, PlanError, planFromRaw } from '../plan/load';
import type { Plan } from '../plan/schema';
import type { ProjectMeta } from './spec';
import { projectProblems } from './waves';

/** Top-level plan fields whose strings may hold template variables: each is checked as identifiers, DDL or SQL. */
export const TEMPLATE_FIELDS = ['name', 'source', 'target', 'create', 'key', 'columns', 'reverse', 'where', 'dropConstraints'] as const;

const VARIABLE = /\{\{\s*([^{}]*?)\s*\}\}/g;

export class TemplateError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
  }
}

function hasTemplate(text: string): boolean {
  return text.includes('{{') || text.includes('}}');
}

function fieldPath(path: readonly (string | number)[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : p)).join('.').replace(/\.\[/g, '[');
}

/** One string with the project's values in; problems name the field and the variable. */
function expandText(text: string, project: ProjectMeta, at: string, problems: string[]): string {
  const out = text.replace(VARIABLE, (whole, name: string) => {
    const m = /^project\.([a-z][a-z0-9_]*)$/.exec(name);
    if (!m) {
      problems.push(`${at}: ${whole} is not a template variable (use {{project.slug}}, {{project.id}} or {{project.<metadata>}})`);
      return whole;
    }
    const value = project[m[1]!];
    if (value === undefined) {
      problems.push(`${at}: project ${project.slug} has no ${m[1]} for ${whole} (it has ${Object.keys(project).sort().join(', ')})`);
      return whole;
    }
    return value;
  });
  if (problems.length === 0 && hasTemplate(out)) problems.push(`${at}: unbalanced {{ or }} in ${JSON.stringify(text.slice(0, 80))}`);
  return out;
}

/**
 * The template tree with `project`'s values in. Refused (TemplateError, every problem named): a project whose slug
 * or values are not safe, a variable it lacks, a variable outside TEMPLATE_FIELDS, in a key, or malformed.
 */
export function expandTemplate(template: unknown, project: ProjectMeta): Record<string, unknown> {
  const problems = projectProblems([project]).map((p) => p.replace('--projects[0]', `project ${JSON.stringify(project.slug)}`));
  if (problems.length) throw new TemplateError(problems);
  if (!template || typeof template !== 'object' || Array.isArray(template)) throw new TemplateError(['(plan): the template is not a mapping']);
  const walk = (value: unknown, path: (string | number)[]): unknown => {
    if (typeof value === 'string') {
      if (!hasTemplate(value)) return value;
      const top = path[0];
      if (!(TEMPLATE_FIELDS as readonly unknown[]).includes(top)) {
        problems.push(`${fieldPath(path)}: template variables are allowed only in ${TEMPLATE_FIELDS.join(', ')}`);
        return value;
      }
      return expandText(value, project, fieldPath(path), problems);
    }
    if (Array.isArray(value)) return value.map((v, i) => walk(v, [...path, i]));
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        if (hasTemplate(k)) problems.push(`${fieldPath([...path, k])}: template variables are not allowed in keys`);
        out[k] = walk(v, [...path, k]);
      }
      return out;
    }
    return value;
  };
  const out = walk(template, []) as Record<string, unknown>;
  if (problems.length) throw new TemplateError(problems);
  return out;
}

export interface LoadedTemplate {
  template: Record<string, unknown>;
  /** SHA-256 of the file's bytes and its createFile's. */
  hash: string;
  path: string;
}

/** Read a template plan file: parsed (YAML or JSON), a createFile read and inlined as `create`, so the tree is self-contained. */
export function readTemplate(file: string): LoadedTemplate {
  const path = resolve(file);
  const read = (p: string, what: string): Buffer => {
    let size: number;
    try {
      size = statSync(p).size;
    } catch (err) {
      throw new TemplateError([`${what}: cannot read: ${(err as Error).message}`]);
    }
    if (size > MAX_PLAN_BYTES) throw new TemplateError([`${what}: larger than ${MAX_PLAN_BYTES / 1024 / 1024} MiB`]);
    return readFileSync(p);
  };
  const bytes = read(path, file);
  const hash = createHash('sha256').update(bytes);
  let raw: unknown;
  try {
    raw = path.endsWith('.json') ? JSON.parse(bytes.toString('utf8')) : parseYaml(bytes.toString('utf8'));
  } catch (err) {
    throw new TemplateError([`${file}: not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`]);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new TemplateError([`${file}: the plan is not a mapping`]);
  const template = { ...(raw as Record<string, unknown>) };
  if (typeof template.createFile === 'string') {
    if (template.create !== undefined) throw new TemplateError(['createFile: give either create or createFile, not both']);
    const ddl = read(resolve(dirname(path), template.createFile), `createFile ${template.createFile}`);
    hash.update(ddl);
    template.create = ddl.toString('utf8');
    delete template.createFile;
  }
  return { template, hash: hash.digest('hex'), path };
}

/**
 * One project's plan: the template expanded, then every check a plan file gets (schema, identifiers, target DDL,
 * expressions). `env` null: the database variable is not looked up (a worker checks it when it connects).
 */
export async function planForProject(template: Record<string, unknown>, project: ProjectMeta, env: NodeJS.ProcessEnv | null = null): Promise<Plan> {
  const label = `project ${project.slug}`;
  const expanded = expandTemplate(template, project);
  let plan: Plan;
  try {
    plan = planFromRaw(label, expanded, Buffer.from(JSON.stringify(expanded)), env).plan;
  } catch (err) {
    if (err instanceof PlanError) throw new TemplateError(err.problems.map((p) => `${label}: ${p}`));
    throw err;
  }
  const problems = await planCodeProblems(plan);
  if (problems.length) throw new TemplateError(problems.map((p) => `${label}: ${p}`));
  return plan;
}
