/**
 * Starts `safeshift dev` once for the integration tests, on free ports and a fresh SAFESHIFT_HOME, and waits for
 * its `ready` line. The variables it wrote to dev.env are put into process.env, which the test workers inherit.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseEnvFile } from '../../src/config';
import { withClient } from '../../src/db';
import { ensureDevKeys } from '../../src/keys';
import { TEST_PEOPLE } from './people';
import { freePort } from './ports';
import { installSupabaseFixture } from './supabase';

const ROOT = resolve(__dirname, '../..');

export default async function globalSetup(): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'safeshift-test-'));
  chmodSync(home, 0o755); // initdb runs as the postgres user when we are root: it must reach its data dir
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SAFESHIFT_HOME: home,
    SAFESHIFT_PG_PORT: String(await freePort()),
    SAFESHIFT_TEMPORAL_PORT: String(await freePort()),
    SAFESHIFT_UI_PORT: String(await freePort()),
  };
  delete env.DATABASE_URL;
  delete env.TEMPORAL_ADDRESS;
  const child = spawn(process.execPath, [join(ROOT, 'bin/safeshift'), 'dev'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`safeshift dev not ready after 180 s:\n${output}`)), 180_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (/^ready$/m.test(output)) {
        clearTimeout(timer);
        ok();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`safeshift dev exited with ${code} before ready:\n${output}`));
    });
  });
  child.removeAllListeners('exit');
  // Keep draining its output so a full pipe never blocks the stack.
  child.stdout.resume();
  child.stderr.resume();
  const devEnv = parseEnvFile(readFileSync(join(home, 'dev.env'), 'utf8'));
  // SAFESHIFT_DEV_PID: tests that disturb the stack check that this process (worker included) outlived it.
  Object.assign(process.env, devEnv, { SAFESHIFT_HOME: home, SAFESHIFT_DEV_PID: String(child.pid) });
  // Every integration test runs in a Supabase-like database: API roles, auth.uid(), default privileges in public.
  await installSupabaseFixture(devEnv.DATABASE_URL!);
  // Decisions are signed: the test people get dev keys, registered before any migration starts (helpers.ts signs
  // with them; the CLI finds them in dev mode). Operator actions without --as are carol's (the usual requester).
  await withClient(devEnv.DATABASE_URL!, (db) => ensureDevKeys(db, TEST_PEOPLE, process.env), 'safeshift test keys');
  process.env.SAFESHIFT_AS ??= 'carol';
  (globalThis as { __SAFESHIFT_DEV__?: unknown }).__SAFESHIFT_DEV__ = child;
}
