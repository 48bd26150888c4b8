/**
 * `safeshift layout plan|apply|verify <layout.yaml>`: the command table. The work is in src/layout/commands.ts,
 * loaded when a layout command runs (the CLI's other commands do not load it).
 */
import type { Command } from 'commander';

type Print = (line: string) => void;
type Action = <A extends unknown[]>(fn: (...args: A) => Promise<number | void>) => (...args: A) => Promise<void>;

// eslint-disable-next-line @typescript-eslint/no-require-imports
const commands = async () => require('../layout/commands') as typeof import('../layout/commands');

export function registerLayoutCommands(program: Command, action: Action, print: Print): void {
  const layout = program.command('layout').description('multi-project layout (shared, one schema per project, system): difference, gated apply, isolation proof');

  layout.command('plan <layout>')
    .description('the difference between the layout and the live database, per scope (auth, shared, system, each project): schemas, tables, RLS flags, grants and policies missing or extra; read-only')
    .option('--json', 'machine output')
    .action(action((file: string, opts: { json?: boolean }) => commands().then((c) => c.layoutPlan(file, opts, print))));

  layout.command('apply <layout>')
    .description('converge the database to the layout through a workflow with an approval gate (safeshift approve layout-<name> --as <approver>); idempotent, resumable, audited')
    .option('--wait', 'wait until the apply ends; exit 1 unless the database is as the layout says')
    .option('--auto-approve', 'approve the gate as the layout\'s approvers (demos and rehearsals, dev stack keys); implies --wait')
    .option('--json', 'machine output')
    .action(action((file: string, opts: { wait?: boolean; autoApprove?: boolean; json?: boolean }) => commands().then((c) => c.layoutApply(file, opts, print))));

  layout.command('verify <layout>')
    .description('prove isolation as the API roles see it (rolled back): RLS on every table; for sampled project pairs a member of one reads and writes 0 rows of the other; anon reads nothing; service_role reads all. Exit 1 naming the table and policy at a failure')
    .option('--sample <n>', 'projects to probe, spread over the layout (pairs: each with the next)', '4')
    .option('--projects <slugs>', 'probe these projects (comma-separated) instead of a sample')
    .option('--json', 'machine output')
    .action(action((file: string, opts: { sample: string; projects?: string; json?: boolean }) => commands().then((c) => c.layoutVerify(file, opts, print))));
}
