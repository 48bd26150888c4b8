/**
 * Drift of the kinds beside relations: a schema's types and functions, and the database-wide extensions, roles,
 * default privileges and publications (compared only when the expectation has them: an inventory JSON).
 */
import { displayIdent } from '../sql';
import type { FunctionDoc, Inventory, TypeDoc } from './docs';
import { compareAccess, compareByKey, compareSets, fieldDiffs, type DriftItem, type Expectation } from './drift-common';

/** What a type is, in one line per aspect; domain CHECKs by definition (generated names differ), not by name. */
function typeAspects(t: TypeDoc): [string, unknown][] {
  switch (t.kind) {
    case 'enum': return [['labels', t.labels.map((l) => `'${l.replace(/'/g, "''")}'`)]];
    case 'composite': return [['fields', t.fields.map((f) => `${f.name} ${f.type}${f.collation ? ` COLLATE ${f.collation}` : ''}`)]];
    case 'range': return [['subtype', t.subtype]];
    case 'domain': return [['base type', t.baseType], ['default', t.default], ['not null', t.notNull], ['collation', t.collation],
      ['checks', t.checks.map((c) => c.definition).sort()]];
  }
}

export function compareTypes(schema: string, expected: TypeDoc[], actual: TypeDoc[], access: boolean, out: DriftItem[]): void {
  const name = (t: TypeDoc) => `${displayIdent(schema)}.${displayIdent(t.name)}`;
  compareByKey(expected, actual, (t) => t.name,
    (e) => ({ object: name(e), kind: 'missing', detail: `${e.kind} ${e.name}` }),
    (a) => ({ object: name(a), kind: 'extra', detail: `${a.kind} ${a.name}` }),
    (e, a) => {
      if (e.kind !== a.kind) {
        out.push({ object: name(e), kind: 'different', detail: `${a.kind}, expected ${e.kind}` });
        return;
      }
      const live = new Map(typeAspects(a));
      const diffs = fieldDiffs(typeAspects(e).map(([label, value]) => [label, live.get(label), value]));
      if (diffs.length) out.push({ object: name(e), kind: 'different', detail: `${e.kind} ${diffs.join('; ')}` });
      compareAccess(name(e), e, a, access, out);
    }, out);
}

export function compareFunctions(schema: string, expected: FunctionDoc[], actual: FunctionDoc[], access: boolean, out: DriftItem[]): void {
  // Overloads share a name: the signature (identity arguments) tells them apart.
  const key = (f: FunctionDoc) => `${displayIdent(schema)}.${displayIdent(f.name)}(${f.signature})`;
  compareByKey(expected, actual, key,
    (e) => ({ object: key(e), kind: 'missing', detail: `${e.kind} ${e.name}(${e.arguments})${e.result ? ` returning ${e.result}` : ''}` }),
    (a) => ({ object: key(a), kind: 'extra', detail: `${a.kind} ${a.name}(${a.arguments})${a.result ? ` returning ${a.result}` : ''}` }),
    (e, a) => {
      const diffs = fieldDiffs([
        ['kind', a.kind, e.kind], ['arguments', a.arguments, e.arguments], ['result', a.result, e.result], ['language', a.language, e.language],
        ['volatility', a.volatility, e.volatility], ['strict', a.strict, e.strict], ['security definer', a.securityDefiner, e.securityDefiner],
        ['parallel', a.parallel, e.parallel], ['config', a.config, e.config],
      ]);
      if (a.bodySha256 !== e.bodySha256) diffs.push('body differs');
      if (diffs.length) out.push({ object: key(e), kind: 'different', detail: diffs.join('; ') });
      compareAccess(key(e), e, a, access, out);
    }, out);
}

/** Database-wide kinds, each only if the expectation has it. */
export function compareDatabaseWide(expected: Expectation, actual: Inventory, out: DriftItem[]): void {
  if (expected.extensions) {
    compareByKey(expected.extensions, actual.extensions, (x) => x.name,
      (e) => ({ object: `extension ${e.name}`, kind: 'missing', detail: `extension ${e.name} ${e.version} in ${e.schema}` }),
      (a) => ({ object: `extension ${a.name}`, kind: 'extra', detail: `extension ${a.name} ${a.version} in ${a.schema}` }),
      (e, a) => {
        const diffs = fieldDiffs([['version', a.version, e.version], ['schema', a.schema, e.schema]]);
        if (diffs.length) out.push({ object: `extension ${e.name}`, kind: 'different', detail: diffs.join('; ') });
      }, out);
  }
  if (expected.roles) {
    compareByKey(expected.roles, actual.roles, (r) => r.name,
      (e) => ({ object: `role ${e.name}`, kind: 'missing', detail: `role ${e.name}` }),
      (a) => ({ object: `role ${a.name}`, kind: 'extra', detail: `role ${a.name}` }),
      (e, a) => {
        const diffs = fieldDiffs([['login', a.login, e.login], ['superuser', a.superuser, e.superuser], ['createrole', a.createRole, e.createRole],
          ['createdb', a.createDb, e.createDb], ['replication', a.replication, e.replication], ['bypassrls', a.bypassRls, e.bypassRls],
          ['inherit', a.inherit, e.inherit], ['connection limit', a.connectionLimit, e.connectionLimit]]);
        if (diffs.length) out.push({ object: `role ${e.name}`, kind: 'different', detail: diffs.join('; ') });
        const memberships = (r: typeof e) => r.memberOf.map((m) => `${m.role}${m.admin ? ' with admin' : ''}${m.inherit === false ? ' noinherit' : ''}${m.set === false ? ' noset' : ''}`);
        compareSets(`role ${e.name}`, 'member of', memberships(e), memberships(a), out);
      }, out);
  }
  if (expected.defaultPrivileges) {
    const key = (d: { role: string; schema: string | null; objects: string }) => `default privileges of ${d.role} on ${d.objects} in ${d.schema ?? 'all schemas'}`;
    const grants = (d: { grants: { grantee: string; privileges: string[] }[] }) => d.grants.map((g) => `${g.grantee}: ${g.privileges.join(', ')}`);
    compareByKey(expected.defaultPrivileges, actual.defaultPrivileges, key,
      (e) => ({ object: key(e), kind: 'missing', detail: grants(e).join('; ') }),
      (a) => ({ object: key(a), kind: 'extra', detail: grants(a).join('; ') }),
      (e, a) => compareSets(key(e), 'grant', grants(e), grants(a), out), out);
  }
  if (expected.publications) {
    compareByKey(expected.publications, actual.publications, (p) => p.name,
      (e) => ({ object: `publication ${e.name}`, kind: 'missing', detail: `publication ${e.name}` }),
      (a) => ({ object: `publication ${a.name}`, kind: 'extra', detail: `publication ${a.name}` }),
      (e, a) => {
        const diffs = fieldDiffs([['all tables', a.allTables, e.allTables], ['operations', a.operations, e.operations]]);
        if (diffs.length) out.push({ object: `publication ${e.name}`, kind: 'different', detail: diffs.join('; ') });
        compareSets(`publication ${e.name}`, 'table', e.tables, a.tables, out);
      }, out);
  }
}
