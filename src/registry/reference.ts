import { EdgestarError } from '../errors.js'
import type { ImageReference } from './types.js'

/** Registry name Docker Hub references normalise to, and where its API really lives. */
export const DOCKER_HUB_REGISTRY = 'docker.io'
const DOCKER_HUB_API_HOST = 'registry-1.docker.io'
const DEFAULT_TAG = 'latest'

// Grammar of github.com/distribution/reference (reference.go, regexp.go), 2024.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/
const IPV6_HOST = /^\[[0-9a-fA-F:.]+\]$/
const PORT = /^[0-9]{1,5}$/
const TAG = /^[\w][\w.-]{0,127}$/
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/
const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/
const MAX_NAME_LENGTH = 255

/**
 * Parses an image reference in the usual grammar: `[registry[:port]/]path[:tag][@digest]`.
 * A first component counts as a registry when it has a `.` or `:` or is `localhost`;
 * otherwise the registry is `docker.io` and a single name gets `library/`. Without tag
 * or digest the tag is `latest`. Throws EDGESTAR_REGISTRY_BAD_REFERENCE.
 */
export function parseReference(input: string): ImageReference {
  const text = input.trim()
  const fail = (why: string): never => {
    throw new EdgestarError(
      'EDGESTAR_REGISTRY_BAD_REFERENCE',
      `invalid image reference "${text}": ${why}`,
      {
        hint: 'write it as [registry[:port]/]repository[:tag][@sha256:digest], e.g. localhost:5000/app:1.0',
      },
    )
  }
  if (text.length === 0) fail('it is empty')

  // The digest goes first: it holds a ':' that must not be taken for a tag.
  let rest = text
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!DIGEST.test(digest)) fail(`digest "${digest}" is not algorithm:hex`)
    if (digest.startsWith('sha256:') && !SHA256_DIGEST.test(digest))
      fail('a sha256 digest has 64 lowercase hex digits')
  }

  // A tag is the part after the last ':' that comes after the last '/'.
  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG.test(tag)) fail(`tag "${tag}" has characters outside [A-Za-z0-9_.-] or is too long`)
  }

  const { registry, repository } = splitName(rest, fail)
  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG
  return makeReference(registry, repository, tag, digest)
}

/** Builds an ImageReference from parts already checked (tag and digest optional). */
export function makeReference(
  registry: string,
  repository: string,
  tag?: string,
  digest?: string,
): ImageReference {
  let name = `${registry}/${repository}`
  if (tag !== undefined) name += `:${tag}`
  if (digest !== undefined) name += `@${digest}`
  const ref: ImageReference = { registry, repository, name }
  if (tag !== undefined) ref.tag = tag
  if (digest !== undefined) ref.digest = digest
  return ref
}

/** The same repository, pinned to `digest` (the tag is kept for display). */
export function withDigest(ref: ImageReference, digest: string): ImageReference {
  return makeReference(ref.registry, ref.repository, ref.tag, digest)
}

/** The host[:port] the registry's HTTP API is served from (Docker Hub's API host differs). */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB_REGISTRY ? DOCKER_HUB_API_HOST : registry
}

/**
 * True when the registry is spoken to over plain HTTP: localhost, 127.0.0.1 and ::1
 * always (as Docker does), others only when listed as insecure (`host` or `host:port`).
 */
export function isPlainHttp(registry: string, insecureRegistries: readonly string[] = []): boolean {
  const host = hostOf(registry)
  if (host === 'localhost' || host === '127.0.0.1' || host === '[::1]' || host === '::1')
    return true
  const wanted = registry.toLowerCase()
  return insecureRegistries.some((entry) => {
    const e = entry
      .trim()
      .toLowerCase()
      .replace(/^https?:\/\//, '')
      .replace(/\/+$/, '')
    return e === wanted || e === host.toLowerCase()
  })
}

/** Base URL of the registry's v2 API, e.g. `http://127.0.0.1:5000`. */
export function registryBaseUrl(
  registry: string,
  insecureRegistries: readonly string[] = [],
): string {
  const scheme = isPlainHttp(registry, insecureRegistries) ? 'http' : 'https'
  return `${scheme}://${apiHost(registry)}`
}

function hostOf(registry: string): string {
  if (registry.startsWith('[')) return registry.slice(0, registry.indexOf(']') + 1)
  const colon = registry.lastIndexOf(':')
  return colon >= 0 ? registry.slice(0, colon) : registry
}

function splitName(
  name: string,
  fail: (why: string) => never,
): { registry: string; repository: string } {
  if (name.length === 0) fail('the repository name is empty')
  const slash = name.indexOf('/')
  const first = slash >= 0 ? name.slice(0, slash) : ''
  const isRegistry =
    slash >= 0 &&
    (first.includes('.') ||
      first.includes(':') ||
      first === 'localhost' ||
      first !== first.toLowerCase())

  let registry = DOCKER_HUB_REGISTRY
  let repository = name
  if (isRegistry) {
    registry = first
    repository = name.slice(slash + 1)
    checkRegistry(registry, fail)
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io')
    registry = DOCKER_HUB_REGISTRY
  if (registry === DOCKER_HUB_REGISTRY && !repository.includes('/'))
    repository = `library/${repository}`

  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT.test(component))
      fail(`repository component "${component}" must be lowercase letters, digits and . _ __ -`)
  }
  if (`${registry}/${repository}`.length > MAX_NAME_LENGTH)
    fail('the name is longer than 255 characters')
  return { registry, repository }
}

function checkRegistry(registry: string, fail: (why: string) => never): void {
  let host = registry
  let port: string | undefined
  if (registry.startsWith('[')) {
    const end = registry.indexOf(']')
    host = registry.slice(0, end + 1)
    if (registry.length > end + 1) {
      if (registry[end + 1] !== ':') fail(`registry "${registry}" is not host[:port]`)
      port = registry.slice(end + 2)
    }
    if (!IPV6_HOST.test(host)) fail(`registry "${registry}" is not a valid IPv6 address`)
  } else {
    const colon = registry.indexOf(':')
    if (colon >= 0) {
      host = registry.slice(0, colon)
      port = registry.slice(colon + 1)
    }
    if (!host.split('.').every((part) => DOMAIN_COMPONENT.test(part)))
      fail(`registry host "${host}" is not a valid host name`)
  }
  if (port !== undefined && (!PORT.test(port) || Number(port) > 65535 || Number(port) === 0))
    fail(`registry port "${port}" is not a number from 1 to 65535`)
}
