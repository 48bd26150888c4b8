/**
 * `safeshift` command line (DESIGN.md "CLI contract"). Exit codes: 0 ok, 1 migration failed or rolled back,
 * 2 bad input (nothing was changed). `--json` gives machine output.
 */
import { Command, CommanderError, Option } from 'commander';
import { CodecError } from '../codec';
import { loadDevEnv } from '../config';
import { runCodecServer } from './codec-server';
import { auditVerify, type AuditVerifyOptions } from './audit';
import { runDev } from './dev';
import { CliError, EXIT_BAD_INPUT, EXIT_FAILED } from './exit';
import { restoreFromDir, scheduleBackup, startBackup, verifyBackupDir, type RestoreOptions } from './backup';
import { showDrift, showInventory } from './inventory';
import { runWorkerCommand } from './worker';
import { registerFleetCommands } from './fleet';
import { registerLayoutCommands } from './layout';
import { keysAdd, keysInit, keysList, keysRevoke } from './keys';
import { checkPlan, decide, listMigrations, rollbackMigration, showPlan, showStatus, signalMigration, startMigration } from './migrations';

const print = (line: string) => process.stdout.write(`${line}\n`);

function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>) {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      process.exitCode = code ?? 0;
    } catch (err) {
      if (err instanceof CliError) {
        process.stderr.write(`${err.message}\n`);
        process.exitCode = err.exitCode;
      } else if (err instanceof CodecError) {
        // The codec keys are configuration: a clear line, exit 2, as for any bad input.
        process.stderr.write(`safeshift: ${err.message}\n`);
        process.exitCode = EXIT_BAD_INPUT;
      } else {
        process.stderr.write(`safeshift: ${(err as Error)?.stack ?? String(err)}\n`);
        process.exitCode = EXIT_FAILED;
      }
    }
  };
}

export function buildProgram(): Command {
  const program = new Command('safeshift')
    .description('Durable, zero-data-loss migrations of live PostgreSQL tables, orchestrated by Temporal')
    .showHelpAfterError()
    // Needed (with the same on `backup`) so `backup schedule --dir` is the schedule's option, not backup's.
    .enablePositionalOptions()
    .exitOverride();

  program.command('dev')
    .description('start the embedded stack: PostgreSQL, Temporal dev server (UI on :8233) and a worker; Ctrl-C stops all')
    .option('--no-worker', 'do not start a worker')
    .action(action(async (opts: { worker: boolean }) => {
      await runDev({ worker: opts.worker });
    }));

  program.command('worker')
    .description('run a worker on the task queue (SAFESHIFT_TASK_QUEUE, default safeshift)')
    .action(action(async () => {
      await runWorkerCommand();
    }));

  program.command('codec-server')
    .description('decrypt Temporal history payloads for the Web UI (--ui-codec-endpoint) and CLI (--codec-endpoint) with the worker\'s codec keys')
    .option('--port <port>', 'TCP port (0: any free port)', '8234')
    .option('--host <address>', 'address to bind; anyone who reaches it can decrypt', '127.0.0.1')
    .option('--ui-origin <url...>', 'browser origins allowed (CORS), e.g. http://localhost:8233; default: TEMPORAL_UI_URL')
    .option('--token-env <env>', 'environment variable holding a token every request must send as Authorization: Bearer <token>')
    .action(action((opts: { port: string; host: string; uiOrigin?: string[]; tokenEnv?: string }) => runCodecServer(opts, print)));

  const plan = program.command('plan').description('work with plan files');
  plan.command('validate <plan>')
    .description('exit 0 if the plan is valid (file, and the live database unless --offline), with preflight\'s notes for the approver; else exit 2, one line per problem')
    .option('--offline', 'check the file only; do not connect to the database')
    .action(action(async (file: string, opts: { offline?: boolean }) => {
      const { plan: p, hash, notes } = await checkPlan(file, opts);
      print(`${file}: valid (${p.name}, sha256:${hash})`);
      for (const n of notes) print(`  note: ${n}`);
    }));

  program.command('start <plan>')
    .description('start a migration; prints the workflow id and the UI link')
    .option('--wait', 'wait until the migration ends; exit 1 unless it is done')
    .option('--auto-approve', 'approve each gate as the plan\'s approvers (demos and rehearsals); implies --wait')
    .option('--json', 'machine output')
    .action(action((file: string, opts: { wait?: boolean; autoApprove?: boolean; json?: boolean }) => startMigration(file, opts, print)));

  program.command('status <id>')
    .description('phase, progress, rows, rate, ETA, gates')
    .option('--json', 'machine output')
    .option('--watch', 'refresh every second until the migration ends')
    .action(action((id: string, opts: { json?: boolean; watch?: boolean }) => showStatus(id, opts, print)));

  program.command('show <id>')
    .description('what a migration runs: with --plan, the whole plan and the hash the workflow computed of it (every decision is bound to it)')
    .option('--plan', 'the whole plan and its hash')
    .option('--json', 'machine output')
    .action(action((id: string, opts: { plan?: boolean; json?: boolean }) => showPlan(id, opts, print)));

  const keys = program.command('keys').description('deciders\' Ed25519 keys: decisions are signed with them');
  keys.command('init')
    .description('make a key pair: the private key goes to $SAFESHIFT_KEYS_DIR or $XDG_CONFIG_HOME/safeshift/keys (0600); prints the public key')
    .option('--name <name>', 'whose key (default: SAFESHIFT_AS, else the login name)')
    .option('--force', 'replace an existing key file')
    .option('--json', 'machine output')
    .action(action((opts: { name?: string; force?: boolean; json?: boolean }) => keysInit(opts, print)));
  keys.command('add <name> <public-key>')
    .description('register a decider\'s public key in the ledger, signed with an administrator\'s key (SAFESHIFT_ADMIN_KEYS), audited; migrations started afterwards accept it')
    .option('--as <name>', 'the administrator whose key signs (default: SAFESHIFT_AS, else the login name)')
    .option('--database <env>', 'environment variable holding the connection string', 'DATABASE_URL')
    .action(action((name: string, key: string, opts: { as?: string; database: string }) => keysAdd(name, key, opts, print)));
  keys.command('revoke <name> <key>')
    .description('revoke a decider\'s key (the public key or its fingerprint), signed by an administrator, audited; migrations started afterwards refuse it')
    .option('--as <name>', 'the administrator whose key signs (default: SAFESHIFT_AS, else the login name)')
    .option('--database <env>', 'environment variable holding the connection string', 'DATABASE_URL')
    .action(action((name: string, key: string, opts: { as?: string; database: string }) => keysRevoke(name, key, opts, print)));
  keys.command('list')
    .description('registered public keys, with whether they count for the administrators known here')
    .option('--json', 'machine output')
    .option('--database <env>', 'environment variable holding the connection string', 'DATABASE_URL')
    .action(action((opts: { json?: boolean; database: string }) => keysList(opts, print)));

  program.command('approve <id>')
    .description('say go at the open gate (signed with your key)')
    .requiredOption('--as <name>', 'approver name, as listed in the plan (signs with that key)')
    .addOption(new Option('--gate <gate>', 'the gate meant; refused if another one is open').choices(['cutover', 'drop', 'restore', 'apply']))
    .option('--reason <text>', 'recorded in the audit log')
    .option('--plan-hash <sha256>', 'the plan hash you reviewed (safeshift show <id> --plan); default: the one the workflow reports, printed')
    .action(action((id: string, opts: { as: string; gate?: 'cutover' | 'drop' | 'restore' | 'apply'; reason?: string; planHash?: string }) => decide(id, 'approve', opts, print)));

  program.command('reject <id>')
    .description('say no at the open gate: the migration rolls back')
    .requiredOption('--as <name>', 'approver name, as listed in the plan (signs with that key)')
    .addOption(new Option('--gate <gate>', 'the gate meant; refused if another one is open').choices(['cutover', 'drop', 'restore', 'apply']))
    .option('--reason <text>', 'recorded in the audit log')
    .option('--plan-hash <sha256>', 'the plan hash you reviewed; default: the one the workflow reports')
    .action(action((id: string, opts: { as: string; gate?: 'cutover' | 'drop' | 'restore' | 'apply'; reason?: string; planHash?: string }) => decide(id, 'reject', opts, print)));

  for (const what of ['pause', 'resume', 'abort'] as const) {
    program.command(`${what} <id>`)
      .description({ pause: 'hold before the next chunk or phase', resume: 'go on after a pause', abort: 'roll back (until the drop has started)' }[what])
      .option('--as <name>', 'who asks: an approver or the requester; signs with that key (default SAFESHIFT_AS)')
      .option('--reason <text>', 'recorded in the audit log')
      .option('--plan-hash <sha256>', 'default: the one the workflow reports')
      .action(action((id: string, opts: { as?: string; reason?: string; planHash?: string }) => signalMigration(id, what, opts, print)));
  }

  program.command('rollback <id>')
    .description('after cutover, until the drop starts: carry writes back to the original table and swap back')
    .option('--as <name>', 'who asks: an approver or the requester; signs with that key (default SAFESHIFT_AS)')
    .option('--reason <text>', 'recorded in the audit log')
    .option('--plan-hash <sha256>', 'default: the one the workflow reports')
    .action(action((id: string, opts: { as?: string; reason?: string; planHash?: string }) => rollbackMigration(id, opts, print)));

  program.command('list')
    .description('migrations known to Temporal')
    .option('--phase <phase>', 'only those in this phase')
    .option('--json', 'machine output')
    .action(action((opts: { phase?: string; json?: boolean }) => listMigrations(opts, print)));

  program.command('inventory')
    .description('document the live database: schemas, tables, columns, constraints, indexes, triggers, views, sequences, grants, RLS, publications, rows, sizes (Markdown, or JSON with --json)')
    .option('--json', 'machine output (stable: two runs on an unchanged database are equal)')
    .option('--schema <name...>', 'only these schemas (default: all but PostgreSQL\'s own)')
    .option('--exact-counts', 'count(*) every table (a full scan each) besides the planner estimate')
    .option('--database <env>', 'environment variable holding the connection string', 'DATABASE_URL')
    .action(action((opts: { json?: boolean; schema?: string[]; exactCounts?: boolean; database: string }) => showInventory(opts, print)));

  program.command('drift')
    .description('compare what an application expects (inventory JSON, or a SQL file of CREATE statements) with the live database; exit 1 on drift')
    .requiredOption('--expect <file>', '*.json: an inventory (safeshift inventory --json); otherwise SQL, applied to a scratch schema and rolled back')
    .option('--schema <name>', 'for a SQL file: the live schema it describes', 'public')
    .option('--json', 'machine output')
    .option('--database <env>', 'environment variable holding the connection string', 'DATABASE_URL')
    .action(action((opts: { expect: string; schema: string; json?: boolean; database: string }) => showDrift(opts, print)));

  const backup = program.command('backup')
    .enablePositionalOptions()
    .description('export tables to files in one snapshot (gzip, manifest with counts, checksums, SHA-256), then verify; a workflow')
    .argument('[tables...]', 'schema.table ...')
    .option('--all', 'every table outside PostgreSQL\'s and safeshift\'s own schemas')
    .option('--dir <dir>', 'output directory on the worker\'s machine, new or empty (default ./safeshift-backups/<id>)')
    .option('--encrypt', `AES-256-GCM, key (32 bytes, hex or base64) from ${'SAFESHIFT_BACKUP_KEY'} on the worker (the default when it is set there)`)
    .option('--no-encrypt', 'write a plain export even when the worker has a key')
    .option('--key-env <env>', 'environment variable holding the key (implies --encrypt)')
    .option('--as <name>', 'who asks (audit log)')
    .option('--json', 'machine output')
    .option('--database <env>', 'environment variable holding the connection string', 'DATABASE_URL')
    .action(action((tables: string[], opts: { all?: boolean; dir?: string; encrypt?: boolean; keyEnv?: string; json?: boolean; database: string; as?: string }) => startBackup(tables, opts, print)));
  backup.command('verify <dir-or-id>')
    .description('exit 0 only if the export is intact: file hashes, then every table loaded into a scratch schema and its count and checksum compared; recorded in the ledger and audit log')
    .option('--as <name>', 'who asks (audit log)')
    .option('--key-env <env>', 'environment variable holding the key of an encrypted export (default SAFESHIFT_BACKUP_KEY)')
    .option('--json', 'machine output')
    .option('--database <env>', 'environment variable holding the connection string', 'DATABASE_URL')
    .action(action((dir: string, opts: { keyEnv?: string; json?: boolean; database: string; as?: string }) => verifyBackupDir(dir, opts, print)));

  backup.command('schedule [tables...]')
    .description('a Temporal Schedule of backups on a cron expression (UTC); overlapping runs skip; keeps the newest N verified exports')
    .requiredOption('--name <name>', 'schedule name (lower-case, digits, dashes): the schedule id is backup-schedule-<name>')
    .requiredOption('--cron <expr>', 'cron expression, e.g. "30 2 * * *"')
    .requiredOption('--retain <n>', 'verified exports to keep; older ones are deleted after each verified run')
    .requiredOption('--dir <dir>', 'root directory on the worker\'s machine; each run writes <dir>/<run id>')
    .option('--all', 'every table outside PostgreSQL\'s and safeshift\'s own schemas')
    .option('--catchup-window <duration>', 'runs missed while Temporal was unavailable are made up within this window', '1h')
    .option('--encrypt', 'AES-256-GCM, key from SAFESHIFT_BACKUP_KEY on the worker (the default when it is set there)')
    .option('--no-encrypt', 'write plain exports even when the worker has a key')
    .option('--key-env <env>', 'environment variable holding the key (implies --encrypt)')
    .option('--as <name>', 'who asks (audit log)')
    .option('--database <env>', 'environment variable holding the connection string', 'DATABASE_URL')
    .action(action((tables: string[], opts: { all?: boolean; name: string; cron: string; retain: string; dir: string; catchupWindow: string; encrypt?: boolean; keyEnv?: string; database: string; as?: string }) => scheduleBackup(tables, opts, print)));

  program.command('restore <dir-or-id>')
    .description('restore one table of an export (restoreWorkflow): into a new table (default <table>_restored_<stamp>), verified by count and ' +
      'checksum before it commits; or --over-live: staged beside the live table, then after approval swapped in, the live table kept as the retired one')
    .option('--table <schema.table>', 'the exported table (may be left out when the export has one)')
    .option('--into <schema.table>', 'the new table to create')
    .option('--over-live', 'replace the live table\'s contents after an approval at the restore gate')
    .option('--approvers <names>', 'with --over-live: who may approve, comma-separated (not the requester)')
    .option('--required <n>', 'with --over-live: approvals needed', '1')
    .option('--gate-timeout <duration>', 'with --over-live: how long the gate waits before the staged rows are discarded', '24h')
    .option('--lock-timeout-ms <ms>', 'with --over-live: lock_timeout of each swap attempt', '2000')
    .option('--wait', 'with --over-live: wait until the restore is over, not just until the gate opens')
    .option('--json', 'JSON output')
    .option('--as <name>', 'who asks (audit log)')
    .option('--key-env <env>', 'environment variable holding the key of an encrypted export (default SAFESHIFT_BACKUP_KEY)')
    .option('--database <env>', 'environment variable holding the connection string', 'DATABASE_URL')
    .action(action((dir: string, opts: RestoreOptions) => restoreFromDir(dir, opts, print)));

  program.command('audit').description('the audit log in the ledger').command('verify')
    .description('recompute the keyed audit chain (SAFESHIFT_AUDIT_KEY); report the first edited, missing or reordered row; exit 1 on any finding')
    .option('--migration <id>', 'also compare with the head this migration anchored in its workflow (finds a deleted tail)')
    .option('--anchor <export-dir|seq:mac>', 'also compare with a head recorded outside the database: a backup export\'s manifest (its audit head at export time) or <seq>:<mac> as written down')
    .option('--key-env <env>', 'with --anchor of an encrypted export: environment variable holding its key, to authenticate the manifest (default SAFESHIFT_BACKUP_KEY)')
    .option('--legacy-until <seq>', 'the last row of the unkeyed chain of a ledger from before the audit key (recorded when the key was introduced); any other unkeyed row is a finding')
    .option('--json', 'machine output')
    .option('--database <env>', 'environment variable holding the connection string', 'DATABASE_URL')
    .action(action((opts: AuditVerifyOptions) => auditVerify(opts, print)));

  registerLayoutCommands(program, action, print);

  registerFleetCommands(program, action, print);

  return program;
}

export async function main(argv: string[]): Promise<void> {
  loadDevEnv();
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : EXIT_BAD_INPUT;
      return;
    }
    throw err;
  }
}

if (require.main === module || process.argv[1]?.endsWith('safeshift')) {
  void main(process.argv);
}
