// The Ansible playbooks in scripts/ansible/ against a real fleet: three hosts, each a network
// namespace with its own sshd, address and deploy root (netns.ts), driven by the real
// ansible-playbook over ssh, running real kernels. A client in this namespace keeps calling every
// host's front door, and polls every host's health endpoint, through the whole story:
//
//   install.yml 0.1.0; upgrade.yml --check to 0.2.0 (changes nothing); rolls to 0.2.0 and 0.3.0,
//   one host at a time; 0.3.0 again (changes nothing, says so); a 0.4.0 that fails its probation on
//   h2 (h1 keeps it, h2 is reverted, h3 is never touched, the play fails naming h2 and why);
//   downgrade.yml back to 0.3.0; then a 0.5.0 that passes the kernel's probation but moves the
//   front door off the balancer's port, which only the playbook's health check catches (h1 put
//   back, h2 and h3 untouched).
//
// Skipped, saying why, only where network namespaces cannot be created (not root, no iproute2).
// THESEUS_FLEET_OUTPUT=<folder> keeps every play's output there (the README's run comes from it).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { root as repo } from '../helpers.ts';
import { releasesSeen, sequenceProblems, startFleetLoad, type HostLoad } from './load.ts';
import { createFleet, missingTools, whyNoNamespaces, type Fleet, type FleetHost } from './netns.ts';
import { buildFleetExamples, buildMovedPort, buildUnhealthyWhereMarked, FLEET_HTTP_PORT, UNHEALTHY_MARKER } from './releases.ts';

const skip = whyNoNamespaces();
if (skip) process.stdout.write(`# the fleet test is skipped: ${skip}\n`);

/** Far above a play's few tens of seconds; a hung one is killed. */
const PLAY_TIMEOUT_MS = 5 * 60_000;

interface PlayResult {
  code: number | null;
  output: string;
  /** Each host's `changed=` count in the PLAY RECAP; hosts the play never reached are absent. */
  recap: Map<string, { changed: number; failed: number }>;
}

interface AuditLine {
  time: string;
  op: string;
  to: string | null;
  outcome: string;
  phase?: string;
}

describe('rolling a release across a fleet with Ansible', { skip: skip ?? false, timeout: 12 * 60_000 }, () => {
  let fleet: Fleet;
  let tarballs: Record<string, string> = {};
  let load: ReturnType<typeof startFleetLoad> | null = null;
  let plays = 0;

  before(async () => {
    assert.deepEqual(missingTools(), [], 'the fleet test needs these tools');
    fleet = await createFleet(3, { theseus_http_port: String(FLEET_HTTP_PORT), theseus_stop_grace_ms: '500', theseus_health_retries: '3', theseus_health_delay: '1' });
    const builds = join(fleet.dir, 'builds');
    await mkdir(builds);
    for (const result of await buildFleetExamples(join(builds, 'releases'))) tarballs[result.version] = result.tarball;
    tarballs['0.4.0'] = (await buildUnhealthyWhereMarked(builds, '0.4.0')).tarball;
    tarballs['0.5.0'] = (await buildMovedPort(builds, '0.5.0', FLEET_HTTP_PORT + 1)).tarball;
  });

  after(async () => {
    await load?.stop();
    await fleet?.cleanUp();
  });

  /** ansible-playbook, asynchronously: the load's event loop must keep running meanwhile. */
  async function play(playbook: string, vars: Record<string, string | number>, flags: string[] = []): Promise<PlayResult> {
    const args = ['-i', fleet.inventory, playbook, '-e', JSON.stringify(vars), ...flags];
    const child = spawn('ansible-playbook', args, { cwd: join(repo, 'scripts', 'ansible'), env: fleet.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    // A play that hangs (an ssh connection that never answers) fails here, not at the suite's timeout.
    const timer = setTimeout(() => child.kill('SIGKILL'), PLAY_TIMEOUT_MS);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(timer);
    const name = `${String(++plays).padStart(2, '0')}-${playbook.replace('.yml', '')}${flags.includes('--check') ? '-check' : ''}-${vars.theseus_version ?? String(vars.theseus_tarball ?? '').replace(/^.*-|\.tar\.gz$/g, '')}.txt`;
    const transcript = `$ ansible-playbook -i inventory.ini ${playbook} -e '${JSON.stringify(vars).replace(fleet.dir, '...')}' ${flags.join(' ')}\n${output}(exit ${code})\n`;
    await writeFile(join(fleet.dir, name), transcript);
    if (process.env.THESEUS_FLEET_OUTPUT) {
      await mkdir(process.env.THESEUS_FLEET_OUTPUT, { recursive: true });
      await copyFile(join(fleet.dir, name), join(process.env.THESEUS_FLEET_OUTPUT, name));
    }
    const recap = new Map<string, { changed: number; failed: number }>();
    for (const [, host, changed, failed] of output.matchAll(/^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)/gm)) recap.set(host!, { changed: Number(changed), failed: Number(failed) });
    return { code, output, recap };
  }

  const tail = (result: PlayResult) => result.output.split('\n').slice(-60).join('\n');

  /** The host's health endpoint, from the controller, as a balancer asks it. */
  async function health(host: FleetHost, port = FLEET_HTTP_PORT): Promise<{ status: number; json: { status: string; release: string; pid: number } }> {
    const response = await fetch(`http://${host.address}:${port}/_theseus/health`);
    return { status: response.status, json: (await response.json()) as { status: string; release: string; pid: number } };
  }

  async function audit(host: FleetHost): Promise<AuditLine[]> {
    const text = await readFile(join(host.root, 'var', 'audit.jsonl'), 'utf8');
    return text.trim().split('\n').map((line) => JSON.parse(line) as AuditLine);
  }

  async function releaseOf(host: FleetHost): Promise<{ running: string; permanent: string | undefined }> {
    const registry = JSON.parse(await readFile(join(host.root, 'releases', 'RELEASES'), 'utf8')) as { releases: Array<{ version: string; status: string }> };
    const { json } = await health(host);
    return { running: json.release, permanent: registry.releases.find((entry) => entry.status === 'permanent')?.version };
  }

  /**
   * One host at a time: each host's upgrade to `version` began (the kernel installed the release)
   * only after the host before it had finished its upgrade, probation included.
   */
  async function assertOneAtATime(version: string): Promise<void> {
    const hosts = fleet.hosts;
    for (let i = 1; i < hosts.length; i++) {
      const done = (await audit(hosts[i - 1]!)).find((line) => line.op === 'upgrade' && line.to === version && line.outcome === 'ok');
      const began = (await audit(hosts[i]!)).find((line) => line.op === 'install' && line.to === version);
      assert.ok(done && began, `audit lines for ${version} on ${hosts[i - 1]!.name} and ${hosts[i]!.name}`);
      assert.ok(began.time > done.time, `${hosts[i]!.name} began installing ${version} at ${began.time}, before ${hosts[i - 1]!.name} finished at ${done.time}: not one host at a time`);
    }
  }

  /** Waits until the load has had `count` more answers: every play runs under load. */
  async function underLoad(count: number): Promise<void> {
    const target = load!.answered() + count;
    for (let i = 0; i < 6000 && load!.answered() < target; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    const failures = load!.hosts.flatMap((host) => host.failures.slice(0, 3).map((failure) => `${host.address}: ${failure}`));
    assert.ok(load!.answered() >= target, `the load stalled: ${failures.join('; ') || 'no answers, no failures'}`);
  }

  it('install.yml sets each host up: its system user, its deploy root, the kernel started and healthy', async () => {
    const result = await play('install.yml', { theseus_tarball: tarballs['0.1.0']! });
    assert.equal(result.code, 0, tail(result));
    for (const host of fleet.hosts) {
      const { status, json } = await health(host);
      assert.deepEqual([status, json.status, json.release], [200, 'ok', '0.1.0'], host.name);
      // The kernel runs as the host's user, inside the host's own network namespace.
      const uid = /^Uid:\s+(\d+)/m.exec(await readFile(`/proc/${json.pid}/status`, 'utf8'))![1];
      const passwd = (await readFile('/etc/passwd', 'utf8')).split('\n').find((line) => line.startsWith(`${host.user}:`));
      assert.ok(passwd, `user ${host.user} created`);
      assert.equal(uid, passwd.split(':')[2], `${host.name}'s kernel runs as ${host.user}`);
      assert.equal((await stat(`/proc/${json.pid}/ns/net`)).ino, (await stat(`/run/netns/${host.namespace}`)).ino, `${host.name}'s kernel runs in its namespace`);
      assert.equal((await stat(host.root)).uid, Number(uid), `${host.name}'s deploy root belongs to ${host.user}`);
    }
    load = startFleetLoad(
      fleet.hosts.map((host) => host.address),
      FLEET_HTTP_PORT,
      { clients: 1, pauseMs: 20, pollMs: 100, maxCallsPerClient: 100_000 },
    );
    await underLoad(50);
  });

  it('upgrade.yml --check shows each host would change, and changes nothing', async () => {
    const before = await Promise.all(fleet.hosts.map(audit));
    const result = await play('upgrade.yml', { theseus_tarball: tarballs['0.2.0']! }, ['--check']);
    assert.equal(result.code, 0, tail(result));
    for (const [index, host] of fleet.hosts.entries()) {
      assert.match(result.output, new RegExp(`"${host.name} would upgrade from 0\\.1\\.0 to 0\\.2\\.0"`));
      assert.ok(result.recap.get(host.name)!.changed > 0, `${host.name} reported as changing`);
      assert.deepEqual(await releaseOf(host), { running: '0.1.0', permanent: '0.1.0' });
      assert.deepEqual(await audit(host), before[index], `${host.name}'s kernel was not asked anything`);
      assert.equal(existsSync(join(host.root, 'incoming', 'sequence-0.2.0.tar.gz')), false, 'no tarball copied');
    }
  });

  for (const version of ['0.2.0', '0.3.0']) {
    it(`upgrade.yml rolls ${version} across the fleet one host at a time, under load`, async () => {
      const answered = load!.answered();
      const result = await play('upgrade.yml', { theseus_tarball: tarballs[version]! });
      assert.equal(result.code, 0, tail(result));
      for (const host of fleet.hosts) assert.deepEqual(await releaseOf(host), { running: version, permanent: version }, host.name);
      await assertOneAtATime(version);
      assert.ok(load!.answered() > answered, 'calls were answered during the roll');
      await underLoad(50);
    });
  }

  it('upgrade.yml again on an upgraded fleet changes nothing, and says so', async () => {
    const result = await play('upgrade.yml', { theseus_tarball: tarballs['0.3.0']! });
    assert.equal(result.code, 0, tail(result));
    for (const host of fleet.hosts) {
      assert.deepEqual(result.recap.get(host.name), { changed: 0, failed: 0 }, `${host.name} in the recap:\n${tail(result)}`);
      assert.match(result.output, new RegExp(`"${host.name} already runs 0\\.3\\.0, permanent: nothing to do"`));
    }
  });

  it('a release that fails its probation on h2: h1 keeps it, h2 is reverted, h3 is never touched, and the play fails naming h2 and why', async () => {
    const [h1, h2, h3] = fleet.hosts as [FleetHost, FleetHost, FleetHost];
    await writeFile(join(h2.root, UNHEALTHY_MARKER), 'this host lacks what 0.4.0 needs\n');
    const h3Before = await audit(h3);
    const result = await play('upgrade.yml', { theseus_tarball: tarballs['0.4.0']! });
    assert.notEqual(result.code, 0, tail(result));
    assert.match(result.output, /theseus: h2 did not take 0\.4\.0: .*failed in phase 'probation'.*this host lacks what 0\.4\.0 needs.*\[E_PROBATION_FAILED\]\. h2 is back on 0\.3\.0 \(reverted by the kernel\)\. The roll stops here: hosts not reached yet keep the release they run; hosts done before \(h1\) stay on 0\.4\.0/);
    assert.deepEqual(await releaseOf(h1), { running: '0.4.0', permanent: '0.4.0' }, 'h1 stays upgraded');
    assert.deepEqual(await releaseOf(h2), { running: '0.3.0', permanent: '0.3.0' }, 'h2 reverted');
    assert.ok((await audit(h2)).some((line) => line.op === 'upgrade' && line.to === '0.4.0' && line.outcome === 'rolled-back' && line.phase === 'probation'));
    assert.deepEqual(await releaseOf(h3), { running: '0.3.0', permanent: '0.3.0' }, 'h3 untouched');
    assert.deepEqual(await audit(h3), h3Before, "h3's kernel was not asked anything");
    assert.equal(existsSync(join(h3.root, 'incoming', 'sequence-0.4.0.tar.gz')), false, 'no tarball copied to h3');
    assert.equal(result.recap.has('h3'), false, `h3 is not in the recap:\n${tail(result)}`);
    assert.equal(result.recap.get('h2')!.failed, 1);
    await underLoad(50);
  });

  it('downgrade.yml takes the fleet back to 0.3.0: only h1 changes', async () => {
    const result = await play('downgrade.yml', { theseus_version: '0.3.0' });
    assert.equal(result.code, 0, tail(result));
    assert.ok(result.recap.get('h1')!.changed > 0);
    for (const host of fleet.hosts.slice(1)) assert.equal(result.recap.get(host.name)!.changed, 0, host.name);
    for (const host of fleet.hosts) assert.deepEqual(await releaseOf(host), { running: '0.3.0', permanent: '0.3.0' }, host.name);
    await underLoad(50);
  });

  it('through all of it, every call was answered, no host was ever down, and each host handed out consecutive numbers', async () => {
    const hosts: HostLoad[] = await load!.stop();
    load = null;
    for (const [index, host] of hosts.entries()) {
      const name = fleet.hosts[index]!.name;
      assert.deepEqual(host.failures.slice(0, 5), [], `${name}: calls not answered 200`);
      assert.deepEqual(host.healthBad.slice(0, 5), [], `${name}: health polls not answered 200 ok`);
      assert.ok(host.healthOk > 0);
      assert.deepEqual(sequenceProblems(host), [], name);
      if (name === 'h1') assert.deepEqual(releasesSeen(host), ['0.1.0', '0.2.0', '0.3.0', '0.4.0', '0.3.0'], name);
      // h2 answered from 0.4.0 only if a call landed during its probation.
      else if (name === 'h2') assert.deepEqual(releasesSeen(host, ['0.4.0']), ['0.1.0', '0.2.0', '0.3.0'], name);
      else assert.deepEqual(releasesSeen(host), ['0.1.0', '0.2.0', '0.3.0'], name);
    }
  });

  it("a release the kernel accepts but whose front door leaves the balancer's port: the playbook's health check puts h1 back and stops", async () => {
    const [h1, h2, h3] = fleet.hosts as [FleetHost, FleetHost, FleetHost];
    const others = await Promise.all([h2, h3].map(audit));
    const result = await play('upgrade.yml', { theseus_tarball: tarballs['0.5.0']! });
    assert.notEqual(result.code, 0, tail(result));
    assert.match(result.output, /theseus: h1 did not take 0\.5\.0: h1 is not healthy: http:\/\/[\d.]+:8080\/_theseus\/health could not be reached \(.*Connection refused.*\) after 3 tries.*h1 is back on 0\.3\.0 \(put back with bin\/kernel downgrade\)\. .*no host was done before it/s);
    // The kernel itself had taken 0.5.0: its probation passed, and the playbook undid it.
    assert.ok((await audit(h1)).some((line) => line.op === 'upgrade' && line.to === '0.5.0' && line.outcome === 'ok'));
    assert.deepEqual(await releaseOf(h1), { running: '0.3.0', permanent: '0.3.0' });
    assert.deepEqual(await Promise.all([h2, h3].map(audit)), others, 'h2 and h3 untouched');
    assert.equal(result.recap.has('h2') || result.recap.has('h3'), false, tail(result));
  });
});
