/**
 * `npm run demo:projects`: the Empathy Ledger's move to one schema per project (issue 16), end to end on the
 * embedded stack, through the CLI an operator uses:
 *   1. `layout apply` (before the split: shared, system and every project schema, without the project stories);
 *   2. seed the platform as it is: every project's stories in one shared `public.stories`, RLS by membership;
 *   3. `fleet start examples/empathy-ledger/stories-split.yaml`: one split per project, a canary wave, its gate
 *      (approved as alice), then the rest (splits of one table run one at a time), each checked for zero loss;
 *   4. `layout apply` again with the whole layout (the project stories get the layout's own policies and grants);
 *   5. `layout verify`: a member of one project reads and writes nothing of another, anon nothing, service_role all.
 * DEMO_PROJECTS (default 50) and DEMO_STORIES per project (default 60) size it. Needs a fresh stack: it refuses a
 * database where it ran before (run it with another SAFESHIFT_HOME and ports).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import pg from 'pg';
import { demoProjects, SPLIT_TEMPLATE, seedLegacyStories, writeDemoLayout, type DemoProject } from '../examples/empathy-ledger/projects';
import { devEnvPath } from '../src/config';
import { attachOrStartDevStack } from '../src/dev/stack';

const PROJECTS = Number(process.env.DEMO_PROJECTS ?? 50);
const STORIES = Number(process.env.DEMO_STORIES ?? 60);
const ROOT = resolve(__dirname, '..');
const say = (line: string) => process.stdout.write(`${line}\n`);

/** The CLI as an operator runs it; its output shown indented. Throws on an unexpected exit code. */
async function safeshift(args: string[], expect: number[] = [0], show = true): Promise<string> {
  if (show) say(`$ safeshift ${args.map((a) => (/[\s,*]/.test(a) ? `'${a}'` : a)).join(' ')}`);
  const child = spawn(process.execPath, [join(ROOT, 'bin/safeshift'), ...args], { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
  const code = await new Promise<number>((ok) => child.on('exit', (c) => ok(c ?? -1)));
  if (show) for (const line of out.trimEnd().split('\n')) say(`  ${line}`);
  if (!expect.includes(code)) throw new Error(`safeshift ${args[0]} ${args[1] ?? ''} exited ${code}`);
  return out;
}

/** Every project table holds exactly the legacy rows of its project (fingerprints taken before the split). */
async function checkZeroLoss(url: string, projects: DemoProject[], before: Map<string, string>): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const problems: string[] = [];
    for (const p of projects) {
      const { rows } = await client.query<{ f: string }>(
        `SELECT count(*) || ':' || coalesce(md5(string_agg(s::text, ',' ORDER BY s.id)), '') AS f FROM project_${p.slug}.stories s`);
      if (rows[0]!.f !== before.get(p.id)) problems.push(`project_${p.slug}.stories differs from its legacy rows`);
    }
    return problems;
  } finally {
    await client.end();
  }
}

async function fingerprints(url: string): Promise<Map<string, string>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ project_id: string; f: string }>(
      `SELECT project_id, count(*) || ':' || md5(string_agg(s::text, ',' ORDER BY s.id)) AS f FROM public.stories s GROUP BY project_id`);
    return new Map(rows.map((r) => [r.project_id, r.f]));
  } finally {
    await client.end();
  }
}

async function runFleet(url: string, projects: DemoProject[], legacy: Map<string, string>, layoutFile: string): Promise<void> {
  const fleetId = 'fleet-stories-split';
  await safeshift(['fleet', 'start', SPLIT_TEMPLATE, '--projects', layoutFile, '--canary', '1', '--parallel', '1', '--on-error', 'stop']);
  const approved = new Set<string>();
  let lastLine = '';
  for (;;) {
    const json = JSON.parse(await safeshift(['fleet', 'status', fleetId, '--json'], [0, 1], false)) as {
      phase: string; gates: { name: string; state: string }[]; totals: { done: number; projects: number; failed: number; rolledBack: number };
    };
    const line = `  ${json.phase}: ${json.totals.done}/${json.totals.projects} projects split`;
    if (line !== lastLine) { say(line); lastLine = line; }
    const open = json.gates.find((g) => g.state === 'open');
    if (open && !approved.has(open.name)) {
      approved.add(open.name);
      await safeshift(['fleet', 'status', fleetId]);
      if (open.name === 'canary') {
        say('gate canary: approving the canary project as alice');
      } else {
        const canary = projects.slice(0, json.totals.done);
        const problems = await checkZeroLoss(url, canary, legacy);
        if (problems.length) throw new Error(`the canary lost rows: ${problems.join('; ')}`);
        say(`gate ${open.name}: ${canary.map((p) => `project_${p.slug}.stories`).join(', ')} equals its legacy rows; approving the rest as alice`);
      }
      await safeshift(['fleet', 'approve', fleetId, '--as', 'alice', '--reason', open.name === 'canary' ? 'start the canary' : 'canary verified']);
    }
    if (['done', 'stopped', 'aborted'].includes(json.phase)) break;
    await sleep(2000);
  }
  await safeshift(['fleet', 'status', fleetId]);
}

async function main(): Promise<void> {
  const began = Date.now();
  Runtime.install({ logger: new DefaultLogger('WARN') });
  say('starting the embedded stack (PostgreSQL, Temporal dev server with UI, worker), or using a running one ...');
  const stack = await attachOrStartDevStack({ log: () => undefined });
  if (!stack) say(`  using the running stack (${devEnvPath()})`);
  const url = process.env.DATABASE_URL!;
  try {
    const dir = mkdtempSync(join(tmpdir(), 'safeshift-projects-demo-'));
    const projects = demoProjects(PROJECTS);
    const before = join(dir, 'layout-before-split.yaml');
    const full = join(dir, 'layout.yaml');
    writeDemoLayout(before, projects, true);
    writeDemoLayout(full, projects, false);
    say(`\n1. the layout, ${projects.length} projects (examples/empathy-ledger/layout.yaml, without the stories a split will bring)`);
    await safeshift(['layout', 'apply', before, '--auto-approve']);

    say(`\n2. the platform as it is: ${STORIES} stories per project in one shared public.stories`);
    const seeded = await seedLegacyStories(url, projects, STORIES);
    say(`  ${seeded} stories seeded`);
    const legacy = await fingerprints(url);

    say('\n3. the split, one project per child migration: canary, gate, the rest');
    await runFleet(url, projects, legacy, full);
    const problems = await checkZeroLoss(url, projects, legacy);
    say(problems.length ? `  LOSS: ${problems.join('; ')}` : `  every project table equals its project's legacy rows (${seeded} stories, ${projects.length} projects)`);

    say('\n4. the whole layout: the project stories get its policies and grants');
    await safeshift(['layout', 'apply', full, '--auto-approve']);

    say('\n5. isolation, as the API roles see it');
    await safeshift(['layout', 'verify', full, '--sample', '6']);

    say(`\ndemo wall time ${((Date.now() - began) / 1000).toFixed(1)} s`);
    if (problems.length) process.exitCode = 1;
  } finally {
    await stack?.stop();
  }
}

main().catch((err) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
