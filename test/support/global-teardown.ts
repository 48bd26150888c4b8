import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

export default async function globalTeardown(): Promise<void> {
  const child = (globalThis as { __SAFESHIFT_DEV__?: ChildProcess }).__SAFESHIFT_DEV__;
  if (child && child.exitCode === null) {
    const exited = new Promise((ok) => child.once('exit', ok));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }
  const home = process.env.SAFESHIFT_HOME;
  if (home && home.includes('safeshift-test-')) rmSync(home, { recursive: true, force: true });
}
