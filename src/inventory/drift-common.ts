/** What the drift comparisons share: the expectation's shape, a difference, set comparison. */
import type {
  DefaultPrivilegeDoc, ExtensionDoc, FunctionDoc, GrantDoc, PublicationDoc, RoleDoc, SequenceDoc, TableDoc, TypeDoc, ViewDoc,
} from './docs';

export interface DriftItem {
  /** `schema.table`, `schema.table.column`, `schema.function(args)`, a role or extension name, ... */
  object: string;
  kind: 'missing' | 'extra' | 'different';
  detail: string;
}

/** `T` with the keys `K` possibly absent: an inventory JSON written before they were documented lacks them. */
type Described<T, K extends keyof T> = Omit<T, K> & Partial<Pick<T, K>>;

export type ExpectedTable = Described<TableDoc, 'partitioning' | 'partitionOf'>;
export type ExpectedView = Described<ViewDoc, 'indexes'>;

export interface ExpectedSchema {
  name: string;
  owner: string;
  tables: ExpectedTable[];
  views: ExpectedView[];
  sequences: SequenceDoc[];
  /** Absent: not described, so not compared (older inventories). */
  types?: TypeDoc[];
  functions?: FunctionDoc[];
}

/**
 * What an application expects. Kinds that are absent are not described, so not compared: a SQL file describes
 * one schema and nothing database-wide; an older inventory JSON lacks the kinds documented since.
 */
export interface Expectation {
  schemas: ExpectedSchema[];
  publications?: PublicationDoc[];
  extensions?: ExtensionDoc[];
  roles?: RoleDoc[];
  defaultPrivileges?: DefaultPrivilegeDoc[];
  /**
   * Whether owners and grants are compared: true for an inventory JSON. Objects a SQL file creates belong to,
   * and are granted as, whoever runs drift, which says nothing about what the application expects.
   */
  access: boolean;
}

/** Missing and extra members of two multisets of descriptions. */
export function compareSets(object: string, what: string, expected: string[], actual: string[], out: DriftItem[]): void {
  const left = [...actual];
  for (const e of expected) {
    const i = left.indexOf(e);
    if (i >= 0) left.splice(i, 1);
    else out.push({ object, kind: 'missing', detail: `${what} ${e}` });
  }
  for (const a of left) out.push({ object, kind: 'extra', detail: `${what} ${a}` });
}

const grantText = (grants: GrantDoc[]) => grants.map((g) => `${g.grantee}: ${g.privileges.join(', ')}`);

/** Owner and grants of one object, when the expectation is about access at all. */
export function compareAccess(object: string, e: { owner: string; grants?: GrantDoc[] }, a: { owner: string; grants?: GrantDoc[] }, access: boolean, out: DriftItem[]): void {
  if (!access) return;
  if (e.owner !== a.owner) out.push({ object, kind: 'different', detail: `owner ${a.owner}, expected ${e.owner}` });
  if (e.grants && a.grants) compareSets(object, 'grant', grantText(e.grants), grantText(a.grants), out);
}

/**
 * Missing and extra by key, `same` for the pairs: the shape every kind shares. Expected order first (as the
 * expectation lists its objects), then the extras in the live order.
 */
export function compareByKey<E, A>(
  expected: E[], actual: A[], key: (x: E | A) => string,
  missing: (e: E) => DriftItem, extra: (a: A) => DriftItem, same: (e: E, a: A) => void, out: DriftItem[],
): void {
  const live = new Map(actual.map((a) => [key(a), a]));
  const wanted = new Set(expected.map(key));
  for (const e of expected) {
    const a = live.get(key(e));
    if (a === undefined) out.push(missing(e));
    else same(e, a);
  }
  for (const a of actual) if (!wanted.has(key(a))) out.push(extra(a));
}

/** "x, expected y" for each field that differs, in the order given. */
export function fieldDiffs(fields: [label: string, actual: unknown, expected: unknown][]): string[] {
  const show = (v: unknown) => (v === null || v === undefined ? 'none' : Array.isArray(v) ? `[${v.join(', ')}]` : String(v));
  return fields.filter(([, a, e]) => JSON.stringify(a) !== JSON.stringify(e)).map(([label, a, e]) => `${label} ${show(a)}, expected ${show(e)}`);
}
