/**
 * `safeshift fleet ...`: the command table. The work is in src/fleet/commands.ts, imported when a fleet command
 * runs (the CLI's other commands do not load it).
 */
import { Option, type Command } from 'commander';

type Print = (line: string) => void;
type Action = <A extends unknown[]>(fn: (...args: A) => Promise<number | void>) => (...args: A) => Promise<void>;

// eslint-disable-next-line @typescript-eslint/no-require-imports
const commands = async () => require('../fleet/commands') as typeof import('../fleet/commands');

export function registerFleetCommands(program: Command, action: Action, print: Print): void {
  const fleet = program.command('fleet').description('one template plan over many projects: waves, gates, per-project rollback and retry');

  fleet.command('start <template-plan>')
    .description('start a fleet: one child migration per project, a canary wave, a gate, then the other waves')
    .requiredOption('--projects <list|layout|SQL>', 'comma-separated slugs, a layout file (its projects and their metadata), or one read-only SELECT returning slug[, id, region, ...]')
    .option('--name <name>', 'fleet name (slug); the fleet id is fleet-<name> (default: the template\'s name)')
    .option('--canary <n|slugs>', 'the canary wave: the first N projects, or a comma list of slugs', '1')
    .option('--canary-parallel <n>', 'children at once in the canary wave')
    .option('--group-by <column>', 'one wave per value of this project column (e.g. region), in order of first appearance')
    .option('--wave-size <n>', 'else: waves of this many projects (default: one wave for all the rest)')
    .option('--parallel <n>', 'children at once in each wave after the canary', '4')
    .option('--wave <name=n...>', 'parallelism of one wave, e.g. --wave eu=2')
    .addOption(new Option('--on-error <mode>', 'a failed project: stop the fleet, or continue and report').choices(['stop', 'continue']).default('stop'))
    .option('--wave-on-error <name=mode...>', 'on error of one wave, e.g. --wave-on-error canary=stop')
    .option('--gate-every-wave', 'a gate before every wave (the canary and the wave after it always have one)')
    .option('--continue-as-new-every <n>', 'children per workflow run before the fleet continues as new', '500')
    .option('--child-heartbeat <duration>', 'heartbeat timeout of the children\'s activities: how soon work on a lost worker is taken up elsewhere (e.g. 5s)')
    .option('--json', 'machine output')
    .action(action((file: string, opts: Record<string, unknown>) => commands().then((c) => c.startFleet(file, opts, print))));

  fleet.command('status <fleet-id>')
    .description('per wave: done / running / waiting / failed / rolled back; gates, slowest projects, failures, ETA')
    .option('--project <slug>', 'one project: state, attempts, its child workflow id')
    .option('--json', 'machine output')
    .action(action((id: string, opts: { project?: string; json?: boolean }) => commands().then((c) => c.fleetStatusCommand(id, opts, print))));

  for (const what of ['approve', 'reject'] as const) {
    fleet.command(`${what} <fleet-id>`)
      .description(what === 'approve' ? 'approve the open wave gate: covers that wave\'s children (signed with your key)' : 'reject the open wave gate: no more projects start')
      .requiredOption('--as <name>', 'approver (signs with that key)')
      .option('--reason <text>', 'recorded in the audit log')
      .action(action((id: string, opts: { as: string; reason?: string }) => commands().then((c) => c.fleetDecide(id, what, opts, print))));
  }
  for (const what of ['pause', 'resume', 'abort'] as const) {
    fleet.command(`${what} <fleet-id>`)
      .description({ pause: 'start no more children (running ones go on)', resume: 'start children again', abort: 'cancel running children (each rolls back) and start no more' }[what])
      .option('--as <name>', 'an approver or the requester (default SAFESHIFT_AS)')
      .option('--reason <text>', 'recorded in the audit log')
      .action(action((id: string, opts: { as?: string; reason?: string }) => commands().then((c) => c.fleetSignal(id, what, opts, print))));
  }
  fleet.command('retry <fleet-id>')
    .description('run a failed (rolled back) project again, or every failed project')
    .option('--project <slug>', 'only this project')
    .option('--as <name>', 'an approver or the requester (default SAFESHIFT_AS)')
    .option('--reason <text>', 'recorded in the audit log')
    .action(action((id: string, opts: { project?: string; as?: string; reason?: string }) => commands().then((c) => c.fleetRetryCommand(id, opts, print))));
}
