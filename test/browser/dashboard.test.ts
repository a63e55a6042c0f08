// The admin listener of a real daemon (a deploy root unpacked from a real tarball, driven with its
// bin/kernel), seen as Prometheus and a person see it: /metrics parsed by a real exposition-format
// parser, and the dashboard in Debian's headless Chromium, driven by playwright-core. One daemon
// serves every check here; the release tarballs are built once.
//
// The screenshot of the page after an upgrade is kept as an artifact (its path is printed);
// DASHBOARD_SCREENSHOT=<file> also writes it there (test/browser/dashboard.png, shown in the README, was made so).

import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { extract } from 'tar';
import { waitUntil } from '../helpers.ts';
import { buildExamples, tempDir } from '../release/helpers.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** The flags that run Debian's Chromium headless as root in a container, with nothing phoning home. */
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** Generous: two shared cores, four engineers' tests. */
const WAIT = { timeoutMs: 60_000, intervalMs: 100 };

const run = promisify(execFile);
let root = '';
let tarball020 = '';
let info: { pid: number; host: string; port: number; token: string; pageUrl: string; metricsUrl: string; ssh: string };
let httpPort = 0;
let context: BrowserContext | null = null;
let load: { stop(): Promise<number> } | null = null;

function kernel(...args: string[]) {
  return spawnSync(join(root, 'bin', 'kernel'), args, { cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, THESEUS_ROOT: '' } });
}

/** GET over plain node:http: status, headers and body. */
function get(url: string, headers: Record<string, string> = {}, agent?: Agent): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = request(url, { headers, ...(agent ? { agent } : {}) }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolvePromise({ status: response.statusCode ?? 0, headers: response.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Callers of the front door's GET /next, one after another on keep-alive connections, until stopped. */
function startLoad(port: number, callers: number): { stop(): Promise<number> } {
  const agent = new Agent({ keepAlive: true, maxSockets: callers });
  let running = true;
  let answered = 0;
  const loops = Array.from({ length: callers }, async () => {
    while (running) {
      const { status } = await get(`http://127.0.0.1:${port}/next`, {}, agent).catch(() => ({ status: 0 }));
      if (status === 200) answered++;
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      return answered;
    },
  };
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium is not at ${CHROMIUM}: apt-get install -y chromium (.ci/run does), or set CHROMIUM_PATH`);
  const { results } = await buildExamples();
  tarball020 = results[1]!.tarball;
  root = await tempDir('theseus-dashboard-');
  await extract({ file: results[0]!.tarball, cwd: root });
  const started = kernel('start');
  assert.equal(started.status, 0, started.stderr + started.stdout);
  const dashboard = kernel('dashboard', '--json');
  assert.equal(dashboard.status, 0, dashboard.stderr + dashboard.stdout);
  info = JSON.parse(dashboard.stdout) as typeof info;
  const status = JSON.parse(kernel('status', '--json').stdout) as { http: { listeners: Array<{ port: number }> } };
  httpPort = status.http.listeners[0]!.port;
});

after(async () => {
  await load?.stop();
  await context?.close();
  if (root) kernel('stop');
});

test('kernel dashboard prints the page with its token, /metrics and the ssh -L line; the token file is owner-only', async () => {
  assert.equal(info.host, '127.0.0.1', 'loopback by default');
  assert.match(info.token, /^[0-9a-f]{64}$/);
  assert.equal(info.pageUrl, `http://127.0.0.1:${info.port}/?token=${info.token}`);
  assert.match(info.ssh, new RegExp(`^ssh -N -L ${info.port}:127\\.0\\.0\\.1:${info.port} `));
  const text = kernel('dashboard');
  assert.equal(text.status, 0, text.stderr);
  assert.ok(text.stdout.includes(info.pageUrl) && text.stdout.includes(info.ssh), text.stdout);
  const { statSync } = await import('node:fs');
  assert.equal(statSync(join(root, 'var', 'admin-token')).mode & 0o777, 0o600);
});

test('/metrics: 401 and no data without the token or with a wrong one; with it, theseus_ metrics a real parser accepts', async () => {
  const wrong: Array<Record<string, string>> = [{}, { authorization: `Bearer ${'0'.repeat(64)}` }, { authorization: `Basic ${info.token}` }];
  for (const headers of wrong) {
    const refused = await get(info.metricsUrl, headers);
    assert.equal(refused.status, 401, JSON.stringify(headers));
    assert.doesNotMatch(refused.body, /theseus_/);
  }
  // Nothing changes through it: the listener is read-only.
  const post = await new Promise<number>((resolvePromise, reject) => {
    const req = request(info.metricsUrl, { method: 'POST', headers: { authorization: `Bearer ${info.token}` } }, (response) => {
      response.resume();
      resolvePromise(response.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(post, 405);

  const calls = 40;
  for (let i = 0; i < calls; i++) assert.equal((await get(`http://127.0.0.1:${httpPort}/next`)).status, 200);
  const scraped = await get(info.metricsUrl, { authorization: `Bearer ${info.token}` });
  assert.equal(scraped.status, 200);
  assert.match(String(scraped.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  type Family = { name: string; type: string; metrics: Array<{ labels?: Record<string, string>; value?: string; buckets?: Record<string, string>; count?: string; sum?: string }> };
  const families = new Map((parsePrometheusTextFormat(scraped.body) as Family[]).map((family) => [family.name, family]));
  for (const [name, type] of [
    ['theseus_calls_total', 'COUNTER'],
    ['theseus_casts_total', 'COUNTER'],
    ['theseus_call_duration_seconds', 'HISTOGRAM'],
    ['theseus_calls_in_flight', 'GAUGE'],
    ['theseus_calls_queued', 'GAUGE'],
    ['theseus_restarts_total', 'COUNTER'],
    ['theseus_worker_heap_bytes', 'GAUGE'],
    ['theseus_state_bytes', 'GAUGE'],
    ['theseus_checkpoint_age_seconds', 'GAUGE'],
    ['theseus_service_info', 'GAUGE'],
    ['theseus_swaps_total', 'COUNTER'],
    ['theseus_swap_pause_seconds', 'HISTOGRAM'],
    ['theseus_swap_phase_duration_seconds', 'HISTOGRAM'],
    ['theseus_http_requests_total', 'COUNTER'],
    ['theseus_http_open_connections', 'GAUGE'],
    ['theseus_http_request_duration_seconds', 'HISTOGRAM'],
  ] as const) {
    assert.equal(families.get(name)?.type, type, `${name} is a ${type}`);
  }
  const ok = families.get('theseus_calls_total')!.metrics.find((m) => m.labels?.service === 'sequence' && m.labels.release === '0.1.0' && m.labels.outcome === 'ok');
  assert.ok(Number(ok?.value) >= calls, `the ${calls} calls are counted: ${ok?.value}`);
  // This parser keeps a histogram's buckets but not its other labels: one series here (sequence
  // under 0.1.0), so they are that series' buckets, cumulative up to +Inf.
  const buckets = families.get('theseus_call_duration_seconds')!.metrics.find((m) => m.buckets)?.buckets ?? {};
  const counts = Object.entries(buckets).sort(([a], [b]) => (a === '+Inf' ? 1 : b === '+Inf' ? -1 : Number(a) - Number(b))).map(([, count]) => Number(count));
  assert.equal(counts.length, 17, JSON.stringify(buckets));
  assert.ok(counts.every((count, index) => index === 0 || count >= counts[index - 1]!), `cumulative: ${counts.join(' ')}`);
  assert.ok(counts.at(-1)! >= calls, `every call is in +Inf: ${counts.join(' ')}`);
  assert.match(scraped.body, /^theseus_call_duration_seconds_count\{service="sequence",release="0\.1\.0"\} \d+$/m);
  const http = families.get('theseus_http_requests_total')!.metrics.find((m) => m.labels?.code === '2xx');
  assert.ok(Number(http?.value) >= calls);
  // Unlabelled, so this parser keeps its count and sum too.
  const door = families.get('theseus_http_request_duration_seconds')!.metrics[0]!;
  assert.ok(Number(door.count) >= calls && door.buckets?.['+Inf'] === door.count, JSON.stringify(door));
  const info01 = families.get('theseus_service_info')!.metrics[0]!;
  assert.deepEqual(info01.labels, { service: 'sequence', release: '0.1.0', vsn: '0', state: 'running' });
});

test('the page: 401 without the token; with it, the services live, an upgrade by bin/kernel on the timeline with its pause, no reload', async () => {
  // A fresh profile each run: nothing remembered from an earlier one (a cookie, a cache).
  context = await chromium.launchPersistentContext(await tempDir('theseus-chromium-'), { executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, viewport: { width: 1280, height: 900 } });
  const page: Page = context.pages()[0] ?? (await context.newPage());
  const base = `http://127.0.0.1:${info.port}/`;

  const refused = await page.goto(base);
  assert.equal(refused?.status(), 401);
  assert.doesNotMatch(await page.content(), /sequence/);
  assert.equal((await page.goto(`${base}?token=${'f'.repeat(64)}`))?.status(), 401);

  const opened = await page.goto(info.pageUrl);
  assert.equal(opened?.status(), 200);
  assert.equal(page.url(), base, 'the token left the address bar for a cookie');
  const row = page.locator('tr[data-service="sequence"]');
  await row.locator('td.release', { hasText: '0.1.0' }).waitFor({ timeout: WAIT.timeoutMs });
  assert.equal(await row.locator('td.vsn').textContent(), '0');
  assert.equal(await row.locator('td.state').textContent(), 'running');
  // Set once: a reload would lose it.
  await page.evaluate('window.sameDocument = true');

  load = startLoad(httpPort, 4);
  const callsShown = async () => Number((await row.locator('td.calls').textContent())!.replace(/,/g, ''));
  const rateShown = async () => Number((await row.locator('td.rate').textContent())!.replace(/,/g, ''));
  await waitUntil('the page shows calls per second above 0', async () => (await rateShown()) > 0, WAIT);
  const before = await callsShown();
  await waitUntil('the calls count moves on the page', async () => (await callsShown()) > before, WAIT);

  const upgraded = await run(join(root, 'bin', 'kernel'), ['upgrade', tarball020], { cwd: root, env: { ...process.env, THESEUS_ROOT: '' }, timeout: 120_000 });
  const pause = /sequence: 0\.1\.0 \(vsn 0\) -> 0\.2\.0 .*pause ([\d.]+) ms/.exec(upgraded.stdout);
  assert.ok(pause, upgraded.stdout);

  const swap = page.locator('#timeline [data-swap-to="0.2.0"]');
  await swap.waitFor({ timeout: WAIT.timeoutMs });
  assert.equal(await swap.getAttribute('data-outcome'), 'ok');
  assert.match((await swap.locator('.pause').textContent())!, /sequence [\d.]+ ms/);
  assert.match((await swap.textContent())!, /upgrade 0\.1\.0 → 0\.2\.0/);
  assert.match((await swap.textContent())!, /switch [\d.]+ ms/);
  await row.locator('td.release', { hasText: '0.2.0' }).waitFor({ timeout: WAIT.timeoutMs });
  // The rates go on after the swap, in the new release's code.
  const afterSwap = await callsShown();
  await waitUntil('the calls count moves on after the upgrade', async () => (await callsShown()) > afterSwap, WAIT);
  await waitUntil('the timeline has the calls/s and the HTTP p99 across the swap', async () => /calls\/s at least [\d.,]+, p99 at most [\d.]+ ms, HTTP p99 at most [\d.]+ ms/.test((await swap.locator('.across').textContent())!), WAIT);
  assert.equal(await page.evaluate('window.sameDocument'), true, 'the page was not reloaded');
  await page.locator('#releases tr[data-release="0.2.0"]').waitFor({ timeout: WAIT.timeoutMs });
  assert.match((await page.locator("#audit").textContent())!, /upgrade 0\.1\.0 → 0\.2\.0  ok/);

  const answered = await load.stop();
  load = null;
  assert.ok(answered > 0);
  // Kept when the test passes too: a person may want to look at it.
  const artifacts = await mkdtemp(join(tmpdir(), 'theseus-dashboard-screenshot-'));
  const shot = join(artifacts, 'dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  process.stdout.write(`# dashboard screenshot: ${shot}\n`);
  if (process.env.DASHBOARD_SCREENSHOT) await copyFile(shot, resolve(process.env.DASHBOARD_SCREENSHOT));
});

test("a swap does not lose the retired worker's calls, with no page open and nobody scraping", async () => {
  // No page ticks from here on: only the kernel's own readings count the calls.
  await context?.close();
  context = null;
  const count = async (release: string) => {
    const { body } = await get(info.metricsUrl, { authorization: `Bearer ${info.token}` });
    const line = new RegExp(`^theseus_calls_total\\{service="sequence",release="${release.replace(/\./g, '\\.')}",outcome="ok"\\} (\\d+)$`, 'm').exec(body);
    return Number(line?.[1] ?? 0);
  };
  const before = await count('0.2.0');
  const calls = 30;
  for (let i = 0; i < calls; i++) assert.equal((await get(`http://127.0.0.1:${httpPort}/next`)).status, 200);
  const down = await run(join(root, 'bin', 'kernel'), ['downgrade', '0.1.0'], { cwd: root, env: { ...process.env, THESEUS_ROOT: '' }, timeout: 120_000 });
  assert.match(down.stdout, /0\.2\.0 \(vsn 0\) -> 0\.1\.0/);
  assert.ok((await count('0.2.0')) >= before + calls, `0.2.0's ${calls} last calls are in its total`);
});
