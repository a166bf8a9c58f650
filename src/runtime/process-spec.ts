import { access, constants, readFile, stat } from 'node:fs/promises'
import { EdgestarError } from '../errors.js'
import { resolveInRoot } from './root-path.js'
import type { ImageRunConfig, ProcessSpec, RunOverrides } from './types.js'

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

/**
 * Joins an image config and a deployment's overrides into the process to run, checked
 * against the container's root filesystem `rootDir`: the user name is looked up in the
 * image's /etc/passwd and /etc/group, and the command must exist and be executable.
 *
 * Throws EdgestarError EDGESTAR_RUNTIME_NO_COMMAND (neither image nor overrides name a
 * command), EDGESTAR_RUNTIME_COMMAND_NOT_FOUND (the executable is missing in the image),
 * EDGESTAR_RUNTIME_USER_UNKNOWN (a user or group name the image does not define).
 */
export async function resolveProcessSpec(
  rootDir: string,
  image: ImageRunConfig,
  overrides: RunOverrides = {},
): Promise<ProcessSpec> {
  const args = commandLine(image, overrides)
  const env = mergeEnv(image.Env ?? [], overrides.env ?? {})
  const cwd = overrides.workingDir || image.WorkingDir || '/'
  const user = await resolveUser(rootDir, overrides.user || image.User || '')
  await checkExecutable(rootDir, args[0] as string, env)
  return { args, env, cwd, ...user }
}

/** Entrypoint + Cmd after overrides; throws when the result is empty. */
export function commandLine(image: ImageRunConfig, overrides: RunOverrides): string[] {
  const hasCommand = overrides.command !== undefined && overrides.command.length > 0
  const entrypoint = hasCommand ? (overrides.command as string[]) : (image.Entrypoint ?? [])
  const fallbackArgs = hasCommand ? [] : (image.Cmd ?? [])
  const args = [...entrypoint, ...(overrides.args ?? fallbackArgs)]
  if (args.length === 0 || args[0] === '') {
    throw new EdgestarError('EDGESTAR_RUNTIME_NO_COMMAND', 'the image names no command to run', {
      hint: 'give a command after `--` (edgestar deploy REF --name N -- CMD ARGS...)',
    })
  }
  return args
}

/** Image env with overrides applied by name; PATH gets the usual default when missing. */
export function mergeEnv(imageEnv: string[], overrides: Record<string, string>): string[] {
  const merged = new Map<string, string>()
  for (const entry of imageEnv) {
    const eq = entry.indexOf('=')
    if (eq > 0) merged.set(entry.slice(0, eq), entry.slice(eq + 1))
  }
  for (const [key, value] of Object.entries(overrides)) merged.set(key, value)
  if (!merged.has('PATH')) merged.set('PATH', DEFAULT_PATH)
  return [...merged].map(([key, value]) => `${key}=${value}`)
}

async function checkExecutable(rootDir: string, command: string, env: string[]): Promise<void> {
  const candidates = command.includes('/')
    ? [command.startsWith('/') ? command : `/${command}`]
    : searchPath(env).map((dir) => `${dir}/${command}`)

  for (const candidate of candidates) {
    const hostPath = await resolveInRoot(rootDir, candidate)
    if (hostPath === undefined) continue
    const info = await stat(hostPath).catch(() => undefined)
    if (info === undefined || !info.isFile()) continue
    const isExecutable = await access(hostPath, constants.X_OK).then(
      () => true,
      () => false,
    )
    if (isExecutable) return
  }
  throw new EdgestarError(
    'EDGESTAR_RUNTIME_COMMAND_NOT_FOUND',
    `command "${command}" does not exist in the image (or is not executable)`,
    {
      hint: 'check the command after `--` or the image Entrypoint/Cmd; the PATH searched is the image env',
    },
  )
}

function searchPath(env: string[]): string[] {
  const entry = env.find((e) => e.startsWith('PATH='))
  const value = entry === undefined ? DEFAULT_PATH : entry.slice('PATH='.length)
  return value.split(':').filter((dir) => dir.startsWith('/'))
}

/**
 * OCI `User` forms: "", "uid", "uid:gid", "name", "name:group", "uid:group", "name:gid".
 * Names resolve through the image's own /etc/passwd and /etc/group.
 */
async function resolveUser(
  rootDir: string,
  user: string,
): Promise<Pick<ProcessSpec, 'uid' | 'gid' | 'additionalGids'>> {
  if (user === '') return { uid: 0, gid: 0, additionalGids: [] }
  const [userPart, groupPart] = user.split(':', 2) as [string, string | undefined]
  const passwd = await readDatabase(rootDir, '/etc/passwd')
  const groups = await readDatabase(rootDir, '/etc/group')

  const passwdRow = passwd.find((row) => row[0] === userPart || row[2] === userPart)
  const uid = isNumeric(userPart) ? Number(userPart) : Number(passwdRow?.[2] ?? Number.NaN)
  if (Number.isNaN(uid)) throw unknownUser(`user "${userPart}"`)

  let gid = Number(passwdRow?.[3] ?? 0)
  if (groupPart !== undefined && groupPart !== '') {
    const groupRow = groups.find((row) => row[0] === groupPart)
    gid = isNumeric(groupPart) ? Number(groupPart) : Number(groupRow?.[2] ?? Number.NaN)
    if (Number.isNaN(gid)) throw unknownUser(`group "${groupPart}"`)
  }

  const name = passwdRow?.[0]
  const additionalGids = groups
    .filter((row) => name !== undefined && (row[3] ?? '').split(',').includes(name))
    .map((row) => Number(row[2]))
    .filter((g) => !Number.isNaN(g) && g !== gid)
  return { uid, gid, additionalGids }
}

function unknownUser(what: string): EdgestarError {
  return new EdgestarError(
    'EDGESTAR_RUNTIME_USER_UNKNOWN',
    `${what} is not defined in the image (/etc/passwd, /etc/group)`,
    { hint: 'use a numeric uid:gid, or a name the image defines' },
  )
}

function isNumeric(value: string): boolean {
  return /^\d+$/.test(value)
}

async function readDatabase(rootDir: string, inner: string): Promise<string[][]> {
  const hostPath = await resolveInRoot(rootDir, inner)
  if (hostPath === undefined) return []
  const text = await readFile(hostPath, 'utf8').catch(() => '')
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => line.split(':'))
}
