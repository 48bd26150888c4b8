/**
 * A stand-in for what Supabase provides and a layout's policies rely on, for a database that is not Supabase (the
 * embedded default, a plain PostgreSQL): the API roles `anon` and `authenticated` (NOLOGIN NOINHERIT),
 * `service_role` (NOLOGIN NOINHERIT BYPASSRLS), the `authenticator` login role PostgREST switches from, and the
 * `auth` schema with `auth.uid()`, `auth.role()` and `auth.jwt()` reading the JWT claims PostgREST puts in
 * `request.jwt.claims` (and the older `request.jwt.claim.*` settings), and an `auth.users` table (id, email).
 * The definitions follow supabase/auth's migrations. Idempotent: each object is created only where it is missing,
 * so on a real Supabase project nothing here runs (`authStandInMissing` finds nothing to do).
 *
 * The test world (test/support/supabase.ts) installs this too, plus Supabase's default privileges in `public`.
 */
import type pg from 'pg';

export const API_ROLES = ['anon', 'authenticated', 'service_role'] as const;

export const SUPABASE_ROLES_SQL = `
DO $$ BEGIN
  CREATE ROLE anon NOLOGIN NOINHERIT;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE authenticated NOLOGIN NOINHERIT;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE authenticator LOGIN NOINHERIT;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT anon, authenticated, service_role TO authenticator;
`;

/** Functions are created only when missing: a real auth.uid() is never replaced. */
export const AUTH_SCHEMA_SQL = `
CREATE SCHEMA IF NOT EXISTS auth;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
DO $$ BEGIN
  IF to_regprocedure('auth.uid()') IS NULL THEN
    CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $fn$
      SELECT nullif(coalesce(current_setting('request.jwt.claim.sub', true),
                             current_setting('request.jwt.claims', true)::jsonb ->> 'sub'), '')::uuid
    $fn$;
  END IF;
  IF to_regprocedure('auth.role()') IS NULL THEN
    CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $fn$
      SELECT nullif(coalesce(current_setting('request.jwt.claim.role', true),
                             current_setting('request.jwt.claims', true)::jsonb ->> 'role'), '')::text
    $fn$;
  END IF;
  IF to_regprocedure('auth.jwt()') IS NULL THEN
    CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $fn$
      SELECT coalesce(nullif(current_setting('request.claim', true), ''),
                      nullif(current_setting('request.jwt.claims', true), ''))::jsonb
    $fn$;
  END IF;
END $$;
CREATE TABLE IF NOT EXISTS auth.users (
  id uuid PRIMARY KEY,
  email text,
  created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE auth.users ENABLE ROW LEVEL SECURITY;
`;

/** What of the stand-in is missing here (empty: nothing to create, e.g. a real Supabase project). */
export async function authStandInMissing(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ missing: string }>(
    `SELECT 'role ' || r AS missing FROM unnest($1::text[]) r WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
     UNION ALL SELECT 'schema auth' WHERE to_regnamespace('auth') IS NULL
     UNION ALL SELECT 'function ' || f FROM unnest(ARRAY['auth.uid()', 'auth.role()', 'auth.jwt()']) f
                WHERE to_regnamespace('auth') IS NULL OR to_regprocedure(f) IS NULL
     UNION ALL SELECT 'table auth.users' WHERE to_regnamespace('auth') IS NULL OR to_regclass('auth.users') IS NULL`,
    [[...API_ROLES, 'authenticator']]);
  return rows.map((r) => r.missing);
}

/** Create what is missing of the stand-in; returns what was missing before. Roles are cluster-wide: races are absorbed. */
export async function installAuthStandIn(client: pg.Client): Promise<string[]> {
  const missing = await authStandInMissing(client);
  if (missing.some((m) => m.startsWith('role '))) await client.query(SUPABASE_ROLES_SQL);
  if (missing.some((m) => !m.startsWith('role '))) await client.query(AUTH_SCHEMA_SQL);
  return missing;
}
