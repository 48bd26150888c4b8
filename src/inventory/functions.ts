/**
 * Functions, procedures and aggregates of the selected schemas (not an extension's): signature, result,
 * language, volatility, strictness, SECURITY DEFINER, parallel safety, SET clauses (search_path), owner, grants,
 * and a SHA-256 of the body (see FunctionDoc.bodySha256 for why a hash).
 */
import { createHash } from 'node:crypto';
import type { FunctionDoc } from './docs';
import { grantsByOid, groupBy, NOT_EXTENSION_MEMBER, type Query } from './query';

const KINDS: Record<string, FunctionDoc['kind']> = { f: 'function', p: 'procedure', a: 'aggregate', w: 'window' };
const VOLATILITY: Record<string, FunctionDoc['volatility']> = { i: 'immutable', s: 'stable', v: 'volatile' };
const PARALLEL: Record<string, FunctionDoc['parallel']> = { s: 'safe', r: 'restricted', u: 'unsafe' };

interface FunctionRow {
  relid: number;
  schema: number;
  name: string;
  kind: string;
  signature: string;
  arguments: string;
  result: string | null;
  language: string;
  volatility: string;
  strict: boolean;
  security_definer: boolean;
  parallel: string;
  config: string[];
  body: string | null;
  owner: string;
  comment: string | null;
}

/**
 * The body is prosrc (the text as written; a C function's symbol); a SQL-standard body (`BEGIN ATOMIC`, prosrc
 * empty) is stored parsed, so PostgreSQL's rendering of the function stands for it. Aggregates have none.
 */
const FUNCTIONS_SQL = `
  SELECT relid, schema, name, kind, signature, arguments, result, language, volatility, strict, security_definer, parallel, config, body, owner, comment FROM (
    SELECT p.oid::int AS relid, p.pronamespace::int AS schema, p.proname AS name, p.prokind::text AS kind,
           pg_get_function_identity_arguments(p.oid) AS signature, pg_get_function_arguments(p.oid) AS arguments,
           CASE WHEN p.prokind <> 'p' THEN pg_get_function_result(p.oid) END AS result,
           l.lanname AS language, p.provolatile::text AS volatility, p.proisstrict AS strict, p.prosecdef AS security_definer,
           p.proparallel::text AS parallel, coalesce(p.proconfig, '{}') AS config,
           CASE WHEN p.prokind = 'a' THEN NULL WHEN p.prosrc = '' THEN pg_get_functiondef(p.oid) ELSE p.prosrc END AS body,
           pg_get_userbyid(p.proowner) AS owner, obj_description(p.oid, 'pg_proc') AS comment
      FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
     WHERE p.pronamespace = ANY($1::oid[]) AND ${NOT_EXTENSION_MEMBER('pg_proc', 'p.oid')}) f
   ORDER BY name COLLATE "C", signature COLLATE "C"`;

/**
 * `printed` maps a body's text before hashing: a drift expectation read from a scratch schema renders its
 * SQL-standard bodies with the scratch name, which must read as the compared schema's for the hashes to match.
 */
export async function readFunctions(q: Query, nsp: number[], printed: (text: string) => string = (t) => t): Promise<Map<number, FunctionDoc[]>> {
  const rows = await q<FunctionRow>(FUNCTIONS_SQL, [nsp]);
  const grants = await grantsByOid(q, `SELECT p.oid::int AS relid, p.proacl AS acl FROM pg_proc p WHERE p.pronamespace = ANY($1::oid[])`, [nsp]);
  const doc = (f: FunctionRow): FunctionDoc => ({
    name: f.name,
    kind: KINDS[f.kind] ?? 'function',
    signature: f.signature,
    arguments: f.arguments,
    result: f.result,
    language: f.language,
    volatility: VOLATILITY[f.volatility] ?? 'volatile',
    strict: f.strict,
    securityDefiner: f.security_definer,
    parallel: PARALLEL[f.parallel] ?? 'unsafe',
    config: f.config,
    bodySha256: f.body === null ? null : createHash('sha256').update(printed(f.body)).digest('hex'),
    owner: f.owner,
    comment: f.comment,
    grants: grants(f.relid),
  });
  const out = new Map<number, FunctionDoc[]>();
  for (const [schema, list] of groupBy(rows, (f) => f.schema)) out.set(schema, list.map(doc));
  return out;
}
