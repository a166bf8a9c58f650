import { readFile, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { moduleLogger } from '../log.js'
import { DOCKER_HUB_REGISTRY } from './reference.js'
import type { RegistryCredentials } from './types.js'

const log = moduleLogger('registry')

/** Docker Hub appears in config.json under its historical v1 URL. */
const DOCKER_HUB_CONFIG_KEYS = [
  'https://index.docker.io/v1/',
  'index.docker.io',
  'docker.io',
  'registry-1.docker.io',
]

/** Where Docker keeps its client config: $DOCKER_CONFIG/config.json or ~/.docker/config.json. */
export function defaultDockerConfigPath(): string {
  const dir = process.env.DOCKER_CONFIG ?? join(homedir(), '.docker')
  return join(dir, 'config.json')
}

interface FileVersion {
  mtimeMs: number
  size: number
  ino: number
}

/**
 * Credentials from a Docker `config.json` (`auths` entries with a base64 `auth` or
 * `username`/`password`). The file is stat'ed on each lookup and re-read when it has
 * changed, so a `docker login` during a long session is picked up. A missing or broken
 * file yields no credentials (logged once per version, without its contents).
 */
export class DockerConfigCredentials {
  readonly path: string
  private version: FileVersion | undefined
  private entries = new Map<string, RegistryCredentials>()

  constructor(path: string) {
    this.path = path
  }

  /** Credentials for a registry (`host[:port]`), or undefined. */
  async lookup(registry: string): Promise<RegistryCredentials | undefined> {
    await this.refresh()
    if (registry === DOCKER_HUB_REGISTRY) {
      for (const key of DOCKER_HUB_CONFIG_KEYS) {
        const found = this.entries.get(key)
        if (found) return found
      }
    }
    return this.entries.get(registry.toLowerCase())
  }

  private async refresh(): Promise<void> {
    let current: FileVersion | undefined
    try {
      const s = await stat(this.path)
      current = { mtimeMs: s.mtimeMs, size: s.size, ino: s.ino }
    } catch {
      current = undefined
    }
    if (sameVersion(current, this.version)) return

    this.version = current
    this.entries = current ? await this.load() : new Map()
  }

  private async load(): Promise<Map<string, RegistryCredentials>> {
    const entries = new Map<string, RegistryCredentials>()
    let parsed: unknown
    try {
      parsed = JSON.parse(await readFile(this.path, 'utf8'))
    } catch (err) {
      log.warn({ path: this.path, reason: (err as Error).name }, 'docker config unreadable')
      return entries
    }

    const auths = (parsed as { auths?: unknown })?.auths
    if (typeof auths !== 'object' || auths === null) return entries
    for (const [key, value] of Object.entries(auths)) {
      const creds = decodeEntry(value)
      if (creds) entries.set(normalizeKey(key), creds)
    }
    // TODO(registry): credsStore/credHelpers (docker-credential-* programs) and OAuth
    // `identitytoken` entries are not consulted; such logins look anonymous to edgestar.
    return entries
  }
}

function sameVersion(a: FileVersion | undefined, b: FileVersion | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  return a.mtimeMs === b.mtimeMs && a.size === b.size && a.ino === b.ino
}

/** `https://host:port/v1/` → `host:port`; Docker Hub's v1 URL kept whole (looked up by it). */
function normalizeKey(key: string): string {
  const lower = key.trim().toLowerCase()
  if (DOCKER_HUB_CONFIG_KEYS.includes(lower)) return lower
  return lower.replace(/^[a-z]+:\/\//, '').replace(/\/.*$/, '')
}

function decodeEntry(value: unknown): RegistryCredentials | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const entry = value as { auth?: unknown; username?: unknown; password?: unknown }

  if (typeof entry.auth === 'string' && entry.auth.length > 0) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
  }
  if (typeof entry.username === 'string' && typeof entry.password === 'string')
    return { username: entry.username, password: entry.password }
  return undefined
}
