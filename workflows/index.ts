export { migrationWorkflow } from './migration';
export { backupWorkflow } from './backup';
