/**
 * The fleet's one activity: each project's plan, expanded from the template and checked like a plan file (the CLI
 * checked them all before the fleet started; this is the same pure function, run again where the child starts).
 * In batches, so the fleet's history grows by one activity per batch, not per project.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { ProjectMeta } from '../src/fleet/spec';
import { planForProject, TemplateError } from '../src/fleet/template';
import type { Plan } from '../src/plan/schema';

export interface FleetPlansInput {
  template: Record<string, unknown>;
  projects: ProjectMeta[];
}

/** Per project, in order: its plan, or why the template gives none for it (a project failure, not a fleet one). */
export async function fleetPlans(input: FleetPlansInput): Promise<Array<{ slug: string; plan?: Plan; problem?: string }>> {
  const out: Array<{ slug: string; plan?: Plan; problem?: string }> = [];
  for (const project of input.projects) {
    try {
      out.push({ slug: project.slug, plan: await planForProject(input.template, project) });
    } catch (err) {
      if (!(err instanceof TemplateError)) throw err;
      out.push({ slug: project.slug, problem: err.problems.join('; ').slice(0, 2000) });
    }
  }
  if (out.length !== input.projects.length) throw ApplicationFailure.nonRetryable('fleetPlans: lost a project', 'BadTemplate');
  return out;
}
