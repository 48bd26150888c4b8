/**
 * The closed set of failures an operator can act on. Each is raised as a non-retryable ApplicationFailure of
 * that type; anything not listed here is treated as transient and retried by Temporal.
 */
import { ApplicationFailure } from '@temporalio/common';
import { scrubDeep, scrubText } from './redact';

export const FATAL = {
  ConfigMissing: 'a setting the worker needs is missing',
  SourceMissing: 'the source table does not exist',
  TargetExists: 'the target table already exists',
  NoKey: 'the source has no usable key for chunking',
  BadPlan: 'the plan does not fit the live database',
  Unsupported: 'the plan asks for something this version cannot do safely',
  PermissionDenied: 'the database role lacks a privilege the migration needs',
  BackupMismatch: 'the backup does not match the source',
  ValidationMismatch: 'the target does not match the source',
  DataRejected: 'the target refused a value of the source (type, length, constraint)',
  SwapBackUnsafe: 'swapping back would lose writes made after cutover',
  NotOurs: 'an object the migration would touch was not created by it',
  GuardBroken: 'the write guard of a table only safeshift may write was dropped, disabled or altered: it may hold writes nobody checked',
  Rejected: 'an approver said no',
  GateTimeout: 'no decision before the gate timed out',
  Aborted: 'an operator aborted the migration',
  RollbackRequested: 'an operator asked for the old table back after cutover',
  BadBackupRequest: 'a backup names a table that does not exist, a directory that is not empty, or a key that is missing',
  BadRestore: 'a restore names an export, table or key that does not fit the live database, or the restored rows break a constraint',
  BackupNotVerified: 'an export did not pass verification: it is kept, but it is not a backup',
  DelegationRefused: 'a gate delegated to a fleet got no approval that holds (not started by that fleet, or not signed by its approvers)',
  BadTemplate: 'a fleet\'s template plan does not give a valid plan for a project',
} as const;

export type FatalType = keyof typeof FATAL;
export const NON_RETRYABLE_TYPES = Object.keys(FATAL) as FatalType[];

/**
 * Messages and details go to Temporal history and the audit log, both kept: build them from errors with
 * `errorText` (src/redact.ts); what slips through anyway has PostgreSQL's value-bearing fragments cut out here.
 */
export function fatal(type: FatalType, message: string, details?: unknown): ApplicationFailure {
  return ApplicationFailure.create({ type, message: scrubText(message), nonRetryable: true, details: details === undefined ? [] : [scrubDeep(details)] });
}
