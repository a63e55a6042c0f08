// Load on a fleet from the controller's side, as a balancer's clients and the balancer itself see
// it: keep-alive clients calling `GET /next` on every host's front door, and a poller per host on
// `GET /_theseus/health`. Everything is recorded per host, nothing is thrown: the test judges.
// The loops are bounded in count, and stop when asked.

import { Agent, request } from 'node:http';

interface Answer {
  status: number;
  body: string;
}

function get(host: string, port: number, path: string, agent: Agent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method: 'GET', agent, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${host}:${port}${path} in 30 s`)));
    req.on('error', reject);
    req.end();
  });
}

export interface HostLoad {
  address: string;
  /** Every number this host handed out, with the release that answered, per client in order. */
  numbers: Array<Array<{ n: number; release: string }>>;
  /** Answers other than 200, and requests that failed, as text. */
  failures: string[];
  /** Health polls: how many answered 200 "ok", and every other answer or failure. */
  healthOk: number;
  healthBad: string[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * `clients` keep-alive clients per host, each waiting `pauseMs` between calls (the machine's two
 * cores also run Ansible and three kernels), and one health poller per host, every `pollMs`.
 */
export function startFleetLoad(addresses: string[], port: number, options: { clients: number; pauseMs: number; pollMs: number; maxCallsPerClient: number }) {
  let stopping = false;
  const hosts: HostLoad[] = addresses.map((address) => ({ address, numbers: Array.from({ length: options.clients }, () => []), failures: [], healthOk: 0, healthBad: [] }));
  const loops: Array<Promise<void>> = [];
  for (const host of hosts) {
    for (const record of host.numbers) {
      loops.push(
        (async () => {
          const agent = new Agent({ keepAlive: true, maxSockets: 1 });
          for (let calls = 0; !stopping && calls < options.maxCallsPerClient; calls++) {
            try {
              const answer = await get(host.address, port, '/next', agent);
              if (answer.status === 200) {
                const { number, release } = JSON.parse(answer.body) as { number: number; release: string };
                record.push({ n: number, release });
              } else host.failures.push(`${answer.status} ${answer.body}`);
            } catch (error) {
              host.failures.push(String(error));
            }
            await sleep(options.pauseMs);
          }
          agent.destroy();
        })(),
      );
    }
    loops.push(
      (async () => {
        const agent = new Agent({ keepAlive: true, maxSockets: 1 });
        while (!stopping) {
          try {
            const answer = await get(host.address, port, '/_theseus/health', agent);
            const status = answer.status === 200 ? (JSON.parse(answer.body) as { status: string }).status : null;
            if (status === 'ok') host.healthOk++;
            else host.healthBad.push(`${answer.status} ${answer.body}`);
          } catch (error) {
            host.healthBad.push(String(error));
          }
          await sleep(options.pollMs);
        }
        agent.destroy();
      })(),
    );
  }
  return {
    hosts,
    /** Numbers answered so far, on every host. */
    answered: () => hosts.reduce((sum, host) => sum + host.numbers.reduce((s, record) => s + record.length, 0), 0),
    async stop(): Promise<HostLoad[]> {
      stopping = true;
      await Promise.all(loops);
      return hosts;
    },
  };
}

/**
 * What is wrong with one host's numbers: a number twice, a gap (a number handed out that no
 * client received), or a client receiving a number not above its previous one.
 */
export function sequenceProblems(host: HostLoad): string[] {
  const problems: string[] = [];
  host.numbers.forEach((record, client) => {
    for (let i = 1; i < record.length; i++) {
      if (record[i]!.n <= record[i - 1]!.n) {
        problems.push(`${host.address} client ${client} got ${record[i]!.n} after ${record[i - 1]!.n}`);
        break;
      }
    }
  });
  const sorted = host.numbers.flat().map((entry) => entry.n).sort((a, b) => a - b);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i] !== sorted[i - 1]! + 1) {
      problems.push(`${host.address}: ${sorted[i - 1]} then ${sorted[i]} (${sorted[i] === sorted[i - 1] ? 'twice' : 'a gap'})`);
      break;
    }
  }
  return problems;
}

/** The releases a host answered from, in order, each run of one release once (`ignoring` some). */
export function releasesSeen(host: HostLoad, ignoring: string[] = []): string[] {
  // Merge the clients' records by number: numbers are handed out in order, so this is time order.
  const byNumber = host.numbers.flat().sort((a, b) => a.n - b.n);
  const seen: string[] = [];
  for (const { release } of byNumber) if (!ignoring.includes(release) && seen.at(-1) !== release) seen.push(release);
  return seen;
}
