/**
 * The multi-project half of the Empathy Ledger example (issue 16): the projects, the legacy shared
 * `public.stories` they are split out of, and the two layouts the demo applies (before the split, without the
 * project `stories` tables the split brings; after it, the whole of layout.yaml).
 *
 * The five projects of layout.yaml come first; more are made up (`community_06`, ...) with ids derived from their
 * slugs, so every run seeds the same world.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import pg from 'pg';
import { parse, stringify } from 'yaml';

export const LAYOUT = resolve(__dirname, 'layout.yaml');
export const SPLIT_TEMPLATE = resolve(__dirname, 'stories-split.yaml');
/** Marks the legacy table as this demo's seed: the demo replaces nothing else. */
export const SEED_COMMENT = 'safeshift projects demo seed';

export interface DemoProject { slug: string; id: string; owner: string; region: string; tier: string }

/** A UUID from a name (the bytes of its SHA-256): stable across runs, distinct per name. */
function uuidFrom(name: string): string {
  const h = createHash('sha256').update(name).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The layout's own projects, then made-up ones up to `count`, alternating the two regions. */
export function demoProjects(count: number): DemoProject[] {
  const layout = parse(readFileSync(LAYOUT, 'utf8')) as { projects: DemoProject[] };
  const projects = layout.projects.slice(0, count);
  for (let n = projects.length + 1; projects.length < count; n++) {
    const slug = `community_${String(n).padStart(2, '0')}`;
    projects.push({ slug, id: uuidFrom(slug), owner: slug.replace('_', '-'), region: n % 3 === 0 ? 'eu-west-2' : 'ap-southeast-2', tier: 'standard' });
  }
  return projects;
}

/**
 * layout.yaml with `projects` replaced; `beforeSplit` leaves out the project tables the split creates (a split
 * refuses a target that exists). Written next to the demo's other files.
 */
export function writeDemoLayout(file: string, projects: DemoProject[], beforeSplit: boolean): void {
  const layout = parse(readFileSync(LAYOUT, 'utf8')) as { project: { tables: { name: string }[] }; projects: DemoProject[] };
  layout.projects = projects;
  if (beforeSplit) layout.project.tables = layout.project.tables.filter((t) => t.name !== 'stories');
  writeFileSync(file, stringify(layout));
}

/**
 * The platform as it is today: every project's stories in one `public.stories`, row-level security by membership
 * (`shared.project_members`, which the first layout created), members and users in `shared`. `perProject` stories
 * each, a handful of members each. Refuses a `public.stories` that is not this seed (or is a view: split already).
 */
export async function seedLegacyStories(url: string, projects: DemoProject[], perProject: number): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ kind: string; comment: string | null }>(
      `SELECT relkind::text AS kind, obj_description(oid, 'pg_class') AS comment FROM pg_class WHERE oid = to_regclass('public.stories')`);
    if (rows[0]) {
      throw new Error(rows[0].kind === 'v'
        ? 'public.stories is already a split view: the projects demo ran on this database; run it on a fresh stack (another SAFESHIFT_HOME and ports)'
        : rows[0].comment === SEED_COMMENT ? 'public.stories from an earlier demo run is still here: run the demo on a fresh stack (another SAFESHIFT_HOME and ports)'
          : 'public.stories exists and is not demo data: the demo will not touch it');
    }
    await client.query('BEGIN');
    await client.query(`
      CREATE TABLE public.stories (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        project_id uuid NOT NULL,
        author_id uuid NOT NULL,
        title text NOT NULL,
        body text NOT NULL DEFAULT '',
        consent jsonb NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX stories_project ON public.stories (project_id);
      COMMENT ON TABLE public.stories IS '${SEED_COMMENT}';
      ALTER TABLE public.stories ENABLE ROW LEVEL SECURITY;
      CREATE POLICY stories_members ON public.stories TO authenticated
        USING (EXISTS (SELECT 1 FROM shared.project_members m WHERE m.project_id = stories.project_id AND m.user_id = (SELECT auth.uid())))
        WITH CHECK (EXISTS (SELECT 1 FROM shared.project_members m WHERE m.project_id = stories.project_id AND m.user_id = (SELECT auth.uid())));
      REVOKE ALL ON public.stories FROM PUBLIC, anon;
      GRANT SELECT, INSERT, UPDATE, DELETE ON public.stories TO authenticated;
      GRANT ALL ON public.stories TO service_role;`);
    const ids = projects.map((p) => p.id);
    // Five members per project, users shared between neighbouring projects (as people are).
    await client.query(`
      INSERT INTO shared.users (id, display_name)
      SELECT md5('demo user ' || u)::uuid, 'Storyteller ' || u FROM generate_series(1, $1::int * 3) u
      ON CONFLICT DO NOTHING`, [projects.length]);
    await client.query(`
      INSERT INTO shared.project_members (project_id, user_id)
      SELECT p.id, md5('demo user ' || (p.n * 3 + k))::uuid
        FROM unnest($1::uuid[]) WITH ORDINALITY AS p(id, n), generate_series(-2, 2) k
       WHERE p.n * 3 + k BETWEEN 1 AND $2::int * 3
      ON CONFLICT DO NOTHING`, [ids, projects.length]);
    const { rowCount } = await client.query(`
      INSERT INTO public.stories (project_id, author_id, title, body, consent)
      SELECT p.id, md5('demo user ' || (p.n * 3))::uuid, 'Story ' || s || ' of ' || p.n,
             repeat('A story told in community ' || p.n || '. ', 1 + s % 7), jsonb_build_object('share', s % 4 <> 0)
        FROM unnest($1::uuid[]) WITH ORDINALITY AS p(id, n), generate_series(1, $2::int) s`, [ids, perProject]);
    await client.query('COMMIT');
    return rowCount ?? 0;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    await client.end();
  }
}
