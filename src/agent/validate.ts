import path from 'node:path'
import { EdgestarError } from '../errors.js'
import { RESTART_POLICIES } from '../runtime/index.js'
import type { DeployRequest } from './types.js'

const NAME_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,62}$/
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Throws EDGESTAR_AGENT_BAD_REQUEST naming the field when `name` is not a valid deployment name. */
export function checkName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw badRequest(
      `deployment name ${JSON.stringify(name)} is not valid`,
      'use 1-63 characters: lowercase letters, digits, and . _ - (starting with a letter or digit)',
    )
  }
  return name
}

/**
 * Checks a deploy request from any client (JSON over the socket or MQTT) and returns it
 * typed. Throws EDGESTAR_AGENT_BAD_REQUEST naming the field and the expected form.
 */
export function checkDeployRequest(input: unknown): DeployRequest {
  if (typeof input !== 'object' || input === null)
    throw badRequest('deploy request is not an object')
  const req = input as Record<string, unknown>
  const name = checkName(req.name)
  if (typeof req.image !== 'string' || req.image.trim() === '')
    throw badRequest(
      'image reference is missing',
      'give an image reference such as 127.0.0.1:5000/app:1',
    )

  const out: DeployRequest = { name, image: req.image.trim() }
  if (req.command !== undefined) out.command = stringList(req.command, 'command')
  if (req.args !== undefined) out.args = stringList(req.args, 'args')
  if (req.env !== undefined) out.env = envMap(req.env)
  if (req.workingDir !== undefined) out.workingDir = absolutePath(req.workingDir, 'workingDir')
  if (req.user !== undefined) out.user = optionalString(req.user, 'user')
  if (req.restart !== undefined) {
    if (!RESTART_POLICIES.includes(req.restart as never))
      throw badRequest(
        `restart policy ${JSON.stringify(req.restart)} is not one of no, on-failure, always`,
      )
    out.restart = req.restart as DeployRequest['restart']
  }
  if (req.network !== undefined) {
    if (req.network !== 'host' && req.network !== 'none')
      throw badRequest(`network ${JSON.stringify(req.network)} is not one of host, none`)
    out.network = req.network
  }
  if (req.binds !== undefined) out.binds = binds(req.binds)
  if (req.init !== undefined) {
    if (typeof req.init !== 'boolean') throw badRequest('init must be true or false')
    out.init = req.init
  }
  if (req.update !== undefined) out.update = req.update === true
  return out
}

function badRequest(message: string, hint?: string): EdgestarError {
  return new EdgestarError(
    'EDGESTAR_AGENT_BAD_REQUEST',
    message,
    hint === undefined ? {} : { hint },
  )
}

function stringList(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string'))
    throw badRequest(`${field} must be a list of strings`)
  return value as string[]
}

function optionalString(value: unknown, field: string): string {
  if (typeof value !== 'string') throw badRequest(`${field} must be a string`)
  return value
}

function absolutePath(value: unknown, field: string): string {
  const text = optionalString(value, field)
  if (!path.isAbsolute(text))
    throw badRequest(`${field} ${JSON.stringify(text)} is not an absolute path`)
  return text
}

function envMap(value: unknown): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw badRequest('env must be an object of NAME: value')
  const out: Record<string, string> = {}
  for (const [key, v] of Object.entries(value)) {
    if (!ENV_NAME_PATTERN.test(key))
      throw badRequest(`env name ${JSON.stringify(key)} is not valid`)
    if (typeof v !== 'string') throw badRequest(`env ${key} must be a string`)
    out[key] = v
  }
  return out
}

function binds(value: unknown): NonNullable<DeployRequest['binds']> {
  if (!Array.isArray(value)) throw badRequest('binds must be a list of {source, target, readOnly}')
  return value.map((item: unknown) => {
    const bind = (item ?? {}) as Record<string, unknown>
    const source = absolutePath(bind.source, 'binds[].source')
    const target = absolutePath(bind.target, 'binds[].target')
    if (target.split('/').includes('..')) throw badRequest(`bind target ${target} contains ..`)
    return { source, target, readOnly: bind.readOnly === true }
  })
}
