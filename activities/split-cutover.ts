/**
 * Cutover of a split (a plan with a row filter, src/row-filter.ts): not built yet, so refused before anything
 * changes; the migration rolls back and the shared table stays as it was.
 */
import { fatal } from '../src/errors';
import type { SwapInput, SwapResult } from './cutover';

export async function splitCutover(_input: SwapInput): Promise<SwapResult> {
  throw fatal('BadPlan', 'cutover of a split (a plan with where:) is not supported yet; the shared table stays as it is');
}

export async function splitBack(_input: SwapInput): Promise<string> {
  return 'nothing to swap back: a split changes nothing at cutover';
}
