// A fleet of "hosts" on this machine for the Ansible tests: each host is a Linux network namespace
// with its own address on a bridge the test creates, its own sshd (Debian's openssh-server, with
// host keys and authorized_keys generated into a temporary folder) and its own deploy root. The
// namespaces share the machine's filesystem, users and processes; only the network is theirs, so
// a kernel started over ssh in a namespace listens on that namespace's address.
//
// Every address is one this file creates (a /24 of 10.213.0.0/16 that no route of the machine
// uses yet); nothing leaves the machine. cleanUp() kills every process left in the namespaces,
// deletes them with the bridge, removes the test's users and its folder, whatever state the test
// left them in. Names carry the test process's pid, so two runs on one machine do not meet.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface FleetHost {
  /** The inventory name: h1, h2, ... */
  name: string;
  namespace: string;
  address: string;
  /** The deploy root install.yml creates. */
  root: string;
  /** The system user install.yml creates and runs the kernel as. */
  user: string;
}

export interface Fleet {
  dir: string;
  hosts: FleetHost[];
  /** The bridge's own address: the controller and the load client reach the hosts from it. */
  gateway: string;
  inventory: string;
  /** The environment for ansible-playbook: its config, and every file it writes under `dir`. */
  env: NodeJS.ProcessEnv;
  cleanUp(): Promise<void>;
}

function run(command: string, args: string[], options: { allowFail?: boolean } = {}): string {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.status !== 0 && !options.allowFail) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.status ?? result.signal}): ${result.stderr || result.error?.message || ''}`);
  }
  return result.stdout;
}

/** Why this machine cannot host the fleet (not root, no `ip`, namespaces refused), or null. */
export function whyNoNamespaces(): string | null {
  if (process.getuid?.() !== 0) return 'the fleet test creates network namespaces and users, which takes root';
  const probe = `thfprobe${process.pid}`;
  const added = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (added.error) return `'ip' (iproute2) is missing: ${added.error.message}`;
  if (added.status !== 0) return `'ip netns add' failed: ${added.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return null;
}

/** What the fleet needs besides namespaces: a missing one fails the test, with the fix. */
export function missingTools(): string[] {
  const missing: string[] = [];
  for (const [tool, pkg] of [
    ['ansible-playbook', 'ansible'],
    ['/usr/sbin/sshd', 'openssh-server'],
    ['ssh-keygen', 'openssh-client'],
  ] as const) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) missing.push(`${tool} (apt-get install ${pkg}; .ci/run installs it)`);
  }
  return missing;
}

/** A /24 under 10.213.0.0/16 that no route of this machine touches yet. */
function freeSubnet(): string {
  const routes = run('ip', ['-4', 'route', 'show', 'table', 'all']);
  for (let k = 0; k < 200; k++) {
    const third = 20 + ((process.pid + k) % 200);
    const prefix = `10.213.${third}.`;
    if (!routes.includes(prefix) && !routes.includes('10.213.0.0/16')) return prefix;
  }
  throw new Error('no free /24 under 10.213.0.0/16 for the fleet');
}

async function waitForPort(host: string, port: number, child: ChildProcess, output: () => string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`sshd on ${host} exited (${child.exitCode}): ${output()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect({ host, port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`sshd on ${host}:${port} never answered: ${output()}`);
}

export async function createFleet(count: number, extraVars: Record<string, string> = {}): Promise<Fleet> {
  const tag = `thf${process.pid}`;
  const dir = await mkdtemp(join(tmpdir(), 'theseus-fleet-'));
  // The hosts' users must reach their deploy roots inside this folder.
  await chmod(dir, 0o755);
  const prefix = freeSubnet();
  const gateway = `${prefix}1`;
  const bridge = `${tag}br`;
  const sshds: ChildProcess[] = [];
  const hosts: FleetHost[] = Array.from({ length: count }, (_, index) => ({
    name: `h${index + 1}`,
    namespace: `${tag}h${index + 1}`,
    address: `${prefix}${11 + index}`,
    root: join(dir, `h${index + 1}`, 'deploy'),
    user: `theseus-${process.pid}-h${index + 1}`,
  }));

  const cleanUp = async () => {
    for (const host of hosts) {
      // Everything still running in the namespace: its sshd, sessions, and the kernel Ansible started.
      const pids = run('ip', ['netns', 'pids', host.namespace], { allowFail: true }).split(/\s+/).filter(Boolean).map(Number);
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
    }
    for (const sshd of sshds) if (sshd.exitCode === null) sshd.kill('SIGKILL');
    for (const host of hosts) {
      for (let i = 0; i < 100 && run('ip', ['netns', 'pids', host.namespace], { allowFail: true }).trim() !== ''; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      run('ip', ['netns', 'del', host.namespace], { allowFail: true });
      run('userdel', [host.user], { allowFail: true });
      run('groupdel', [host.user], { allowFail: true });
    }
    run('ip', ['link', 'del', bridge], { allowFail: true });
    await rm(dir, { recursive: true, force: true });
  };

  try {
    run('ip', ['link', 'add', bridge, 'type', 'bridge']);
    run('ip', ['addr', 'add', `${gateway}/24`, 'dev', bridge]);
    run('ip', ['link', 'set', bridge, 'up']);
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'theseus-fleet-controller', '-f', join(dir, 'id_ed25519')]);
    await writeFile(join(dir, 'authorized_keys'), await readFile(join(dir, 'id_ed25519.pub')));
    // sshd's privilege separation folder; Debian's package makes it only when its service starts.
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    const knownHosts: string[] = [];
    for (const [index, host] of hosts.entries()) {
      const hostDir = join(dir, host.name);
      await mkdir(hostDir, { recursive: true, mode: 0o755 });
      await chmod(hostDir, 0o755);
      const veth = `${tag}v${index + 1}`;
      run('ip', ['netns', 'add', host.namespace]);
      run('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.namespace]);
      run('ip', ['link', 'set', veth, 'master', bridge, 'up']);
      run('ip', ['-n', host.namespace, 'addr', 'add', `${host.address}/24`, 'dev', 'eth0']);
      run('ip', ['-n', host.namespace, 'link', 'set', 'eth0', 'up']);
      run('ip', ['-n', host.namespace, 'link', 'set', 'lo', 'up']);
      const hostKey = join(hostDir, 'ssh_host_ed25519_key');
      run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', host.name, '-f', hostKey]);
      knownHosts.push(`${host.address} ${(await readFile(`${hostKey}.pub`, 'utf8')).split(' ').slice(0, 2).join(' ')}`);
      const config = join(hostDir, 'sshd_config');
      await writeFile(
        config,
        [
          `ListenAddress ${host.address}:22`,
          `HostKey ${hostKey}`,
          `PidFile ${join(hostDir, 'sshd.pid')}`,
          `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
          'PermitRootLogin prohibit-password',
          'PasswordAuthentication no',
          'KbdInteractiveAuthentication no',
          'UsePAM no',
          // The keys live in a temporary folder, not in ~/.ssh with the modes sshd insists on there.
          'StrictModes no',
          'Subsystem sftp internal-sftp',
          'MaxStartups 100',
          'MaxSessions 100',
          'LogLevel ERROR',
          '',
        ].join('\n'),
      );
      let output = '';
      const sshd = spawn('ip', ['netns', 'exec', host.namespace, '/usr/sbin/sshd', '-D', '-e', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] });
      sshd.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      sshd.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      sshds.push(sshd);
      await waitForPort(host.address, 22, sshd, () => output);
    }
    await writeFile(join(dir, 'known_hosts'), `${knownHosts.join('\n')}\n`);

    const sshArgs = [`-F /dev/null`, `-o UserKnownHostsFile=${join(dir, 'known_hosts')}`, '-o StrictHostKeyChecking=yes', '-o IdentitiesOnly=yes', '-o BatchMode=yes'].join(' ');
    const vars = {
      ansible_user: 'root',
      ansible_python_interpreter: '/usr/bin/python3',
      ansible_ssh_private_key_file: join(dir, 'id_ed25519'),
      ansible_ssh_common_args: `'${sshArgs}'`,
      theseus_use_systemd: 'false',
      theseus_node: process.execPath,
      ...extraVars,
    };
    const inventory = join(dir, 'inventory.ini');
    await writeFile(
      inventory,
      [
        '[theseus]',
        ...hosts.map((host) => `${host.name} ansible_host=${host.address} theseus_root=${host.root} theseus_user=${host.user}`),
        '',
        '[theseus:vars]',
        ...Object.entries(vars).map(([key, value]) => `${key}=${value}`),
        '',
      ].join('\n'),
    );
    for (const sub of ['ansible-home', 'ansible-tmp', 'cp']) await mkdir(join(dir, sub), { mode: 0o700 });
    // Modules run as each host's user create their temporary folders here, as they would in /tmp.
    await mkdir(join(dir, 'remote-tmp'));
    await chmod(join(dir, 'remote-tmp'), 0o1777);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ANSIBLE_CONFIG: new URL('../../scripts/ansible/ansible.cfg', import.meta.url).pathname,
      ANSIBLE_HOME: join(dir, 'ansible-home'),
      ANSIBLE_LOCAL_TEMP: join(dir, 'ansible-tmp'),
      ANSIBLE_REMOTE_TMP: join(dir, 'remote-tmp'),
      ANSIBLE_SSH_CONTROL_PATH_DIR: join(dir, 'cp'),
      // A master connection per host, gone a few seconds after the last task (or with its sshd).
      ANSIBLE_SSH_ARGS: '-o ControlMaster=auto -o ControlPersist=5s',
      ANSIBLE_NOCOLOR: '1',
      ANSIBLE_FORCE_COLOR: '0',
      PYTHONDONTWRITEBYTECODE: '1',
    };
    return { dir, hosts, gateway, inventory, env, cleanUp };
  } catch (error) {
    await cleanUp();
    throw error;
  }
}
