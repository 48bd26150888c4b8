/** Every activity, one file per phase; the workflow sees them through `proxyActivities<typeof activities>`. */
export { recordEvent } from './ledger';
export { preflight } from './preflight';
export { backupTable } from './backup';
export { createTarget, dropTarget } from './prepare';
export { copySlice } from './copy';
export { validateCopy } from './validate';
export { swapTables, swapBack } from './cutover';
export { verifyCutover } from './verify';
export { dropRetired } from './drop';
