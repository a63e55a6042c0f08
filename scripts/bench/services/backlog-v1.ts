// The backlog-benchmark service, first version (see backlog.ts).
import { backlogService } from './backlog.ts';

export default backlogService('v1');
