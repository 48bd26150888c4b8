export { migrationWorkflow } from './migration';
export { backupWorkflow } from './backup';
export { restoreWorkflow } from './restore';
export { backupRetentionWorkflow } from './retention';
export { layoutWorkflow } from './layout';
export { inPlaceWorkflow } from './in-place';
export { fleetMigrationWorkflow } from './fleet';
