import { sql } from './helpers';

/** A profiles-like table in the "old" shape, n rows, with NULLs, Unicode and awkward text on purpose. */
export async function seedProfiles(table: string, rows: number): Promise<void> {
  await sql(`CREATE TABLE public.${table} (
    id bigint PRIMARY KEY,
    full_name text NOT NULL,
    email text,
    bio text,
    score numeric(10,2),
    tags text[],
    created_at timestamptz NOT NULL DEFAULT now())`);
  await sql(`INSERT INTO public.${table}
    SELECT g, 'Name ' || g || CASE WHEN g % 7 = 0 THEN E' \\t tab, "quote", ünï ☃' ELSE '' END,
           CASE WHEN g % 5 = 0 THEN NULL ELSE 'User' || g || '@Example.ORG' END,
           CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('bio ', g % 20) || E'\\nline two \\\\ back' END,
           (g % 1000) / 7.0,
           CASE WHEN g % 4 = 0 THEN NULL ELSE ARRAY['t' || (g % 3), NULL, 'x y'] END,
           timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute'
      FROM generate_series(1, $1::int) g`, [rows]);
  await sql(`ANALYZE public.${table}`);
}

/** The new shape the application expects, and the mapping from the old one. */
export function profilesV2(target: string): { create: string; columns: Record<string, string> } {
  return {
    create: `CREATE TABLE public.${target} (
      id bigint PRIMARY KEY, display_name text NOT NULL, email text, bio text, score numeric(12,2),
      tags text[], created_at timestamptz NOT NULL, migrated boolean NOT NULL DEFAULT true)`,
    columns: { display_name: 'full_name', email: 'lower(email)' },
  };
}

/** The same mapping written independently as plain SQL, for the tests' own comparison. */
export const PROFILES_V2_SELECT = (table: string) =>
  `SELECT id, full_name AS display_name, lower(email) AS email, bio, score::numeric(12,2) AS score, tags, created_at FROM public.${table}`;
export const PROFILES_V2_TARGET_SELECT = (table: string) =>
  `SELECT id, display_name, email, bio, score, tags, created_at FROM public.${table}`;
