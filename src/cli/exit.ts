/** Exit codes of the CLI contract: 0 ok, 1 migration failed or rolled back, 2 bad input (nothing was changed). */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_BAD_INPUT = 2;

/** An error whose message is for the operator as is, with the exit code to leave with. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT_BAD_INPUT) {
    super(message);
  }
}

/** The connection string in the environment variable a command's `--database` names. */
export function connectionString(envName: string, env: NodeJS.ProcessEnv = process.env): string {
  const url = env[envName];
  if (!url) throw new CliError(`--database: environment variable ${envName} is not set`);
  return url;
}
