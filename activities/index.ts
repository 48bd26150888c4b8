/** Every activity, one file per phase; the workflow sees them through `proxyActivities<typeof activities>`. */
export { recordEvent } from './ledger';
export { preflight } from './preflight';
export { backupTable, dropExpiredBackup, keepBackupUntil } from './backup';
export { createTarget, dropTarget, installChangeCapture, removeChangeCapture } from './prepare';
export { copySlice } from './copy';
export { buildIndexes } from './build';
export { catchUp, type CatchUpInput } from './catch-up';
export { validateCopy } from './validate';
export { swapTables, swapBack } from './cutover';
export { verifyCutover } from './verify';
export { dropRetired } from './drop';
export { exportBackup, pruneBackups, verifyBackup } from './export';
export { checkRestore, discardStagedRestore, loadRestore, swapInRestored } from './restore';
export { readDeciderKeys } from './identity';
export { planLayoutChanges, convergeLayoutAuth, convergeLayoutScopes } from './layout';
export { preflightInPlace, applyInPlace, revertInPlace, finishInPlace } from './in-place';
export { fleetPlans } from './fleet';
