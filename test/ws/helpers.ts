// Helpers for the WebSocket tests: the chat example's releases built once per file, a deploy
// root started with its own bin/kernel, and a real `ws` client that keeps every frame it gets.

import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { extract } from 'tar';
import WebSocket from 'ws';
import { buildRelease, type BuildResult } from '../../kernel/release/build.ts';
import type { FrontDoorStats } from '../../kernel/common/status.ts';
import { root as repo, waitUntil } from '../helpers.ts';
import { tempDir } from '../temp-dirs.ts';

const run = promisify(execFile);

export const chatVersions = ['0.1.0', '0.2.0'] as const;

/** Builds releases from these theseus.config.ts files, in order, into one fresh folder. */
export async function buildConfigs(configFiles: readonly string[]): Promise<BuildResult[]> {
  const outDir = await tempDir('theseus-ws-releases-');
  const results: BuildResult[] = [];
  for (const configFile of configFiles) results.push(await buildRelease({ configFile, outDir }));
  return results;
}

export function chatConfig(version: string): string {
  return join(repo, 'services', 'chat', version, 'theseus.config.ts');
}

export function cli(root: string, ...args: string[]) {
  return spawnSync(join(root, 'bin', 'kernel'), args, { cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, THESEUS_ROOT: '' } });
}

/** The CLI without blocking this process's event loop, so the clients keep going. */
export async function cliAsync(root: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(join(root, 'bin', 'kernel'), args, { cwd: root, timeout: 60_000, env: { ...process.env, THESEUS_ROOT: '' } });
  return stdout;
}

/** Unpacks a release tarball into a fresh deploy root and starts its kernel; returns the root and the port. */
export async function startDeployRoot(tarball: string, roots: string[]): Promise<{ root: string; port: number }> {
  const root = await tempDir('theseus-ws-');
  roots.push(root);
  await extract({ file: tarball, cwd: root });
  const started = cli(root, 'start');
  if (started.status !== 0) throw new Error(`kernel start failed: ${started.stderr}${started.stdout}`);
  return { root, port: (await frontDoor(root)).listeners[0]!.port };
}

export async function frontDoor(root: string): Promise<FrontDoorStats> {
  return (JSON.parse(await cliAsync(root, 'status', '--json')) as { http: FrontDoorStats }).http;
}

export interface Frame {
  type: string;
  [key: string]: unknown;
}

/** A chat client on a real `ws` connection: every text frame it gets, parsed, and how it closed. */
export class ChatClient {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  /** The connection id the welcome gave. */
  id = '';
  closed: { code: number; reason: string } | null = null;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      // The chat speaks JSON; anything else (a test fixture's filler) is kept as text.
      const text = data.toString();
      this.frames.push(text.startsWith('{') ? (JSON.parse(text) as Frame) : { type: 'text', text });
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
    });
  }

  /** Connects to /chat (with `query`), and resolves once the welcome came. */
  static async connect(port: number, query: string): Promise<ChatClient> {
    const client = new ChatClient(new WebSocket(`ws://127.0.0.1:${port}/chat?${query}`));
    await new Promise<void>((resolve, reject) => {
      client.ws.once('open', () => resolve());
      client.ws.once('error', reject);
    });
    const welcome = await client.next('welcome');
    client.id = welcome.id as string;
    return client;
  }

  say(text: string, seq?: number): void {
    this.ws.send(JSON.stringify({ type: 'say', text, ...(seq === undefined ? {} : { seq }) }));
  }

  /** The first frame of `type` that matches, once it has come. */
  async next(type: string, match: (frame: Frame) => boolean = () => true): Promise<Frame> {
    let found: Frame | undefined;
    await waitUntil(`a '${type}' frame`, () => (found = this.frames.find((frame) => frame.type === type && match(frame))) !== undefined);
    return found!;
  }

  said(): Frame[] {
    return this.frames.filter((frame) => frame.type === 'said');
  }

  async closedWith(): Promise<{ code: number; reason: string }> {
    await waitUntil('the connection to close', () => this.closed !== null);
    return this.closed!;
  }
}

/**
 * The upgrade refused: resolves with the HTTP status of the answer (and its body), or rejects if
 * the connection opened.
 */
export function refusedUpgrade(port: number, path: string): Promise<{ status: number; body: string }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      ws.terminate();
      reject(new Error(`${path}: the connection opened`));
    });
    ws.once('unexpected-response', (_request, response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    ws.once('error', () => undefined);
  });
}
