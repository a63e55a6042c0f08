// The backlog-benchmark service, second version (see backlog.ts).
import { backlogService } from './backlog.ts';

export default backlogService('v2');
