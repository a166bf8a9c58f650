import { EdgestarError } from '../errors.js'
import type { Platform } from './types.js'

// Node's process.arch → OCI architecture (image-spec config.md, GOARCH values).
const NODE_ARCH_TO_OCI: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
}

/**
 * Parses `os/arch[/variant]` or just `arch[/variant]` (os defaults to linux), e.g.
 * `linux/arm64`, `arm/v7`, `amd64`. `aarch64` and `x86_64` are accepted as aliases.
 * Throws EDGESTAR_REGISTRY_BAD_PLATFORM.
 */
export function parsePlatform(text: string): Platform {
  const parts = text.trim().toLowerCase().split('/')
  if (parts.some((p) => !/^[a-z0-9_.-]+$/.test(p)) || parts.length > 3) {
    throw new EdgestarError('EDGESTAR_REGISTRY_BAD_PLATFORM', `invalid platform "${text}"`, {
      hint: 'write it as os/arch[/variant], e.g. linux/arm64, linux/arm/v7 or linux/amd64',
    })
  }
  const known = ['linux', 'windows', 'darwin', 'freebsd']
  const [os, arch, variant] = known.includes(parts[0] as string) ? parts : ['linux', ...parts]
  return normalizePlatform({ os: os as string, architecture: arch ?? '', variant })
}

/** Lower-cases, maps aliases and fills defaults (`arm` without variant means v7, arm64 → v8). */
export function normalizePlatform(platform: Platform): Platform {
  let architecture = platform.architecture.toLowerCase()
  let variant = platform.variant?.toLowerCase() || undefined
  if (architecture === 'aarch64') architecture = 'arm64'
  if (architecture === 'x86_64' || architecture === 'x86-64') architecture = 'amd64'
  if (architecture === 'armhf' || architecture === 'armel') {
    variant = architecture === 'armhf' ? 'v7' : 'v6'
    architecture = 'arm'
  }
  if (architecture === 'arm' && variant === undefined) variant = 'v7'
  if (architecture === 'arm64' && variant === 'v8') variant = undefined
  const result: Platform = { os: platform.os.toLowerCase() || 'linux', architecture }
  if (variant !== undefined) result.variant = variant
  return result
}

/** The platform of the device edgestar runs on, from process.arch (arm uses its float ABI). */
export function hostPlatform(): Platform {
  const architecture = NODE_ARCH_TO_OCI[process.arch] ?? process.arch
  if (architecture !== 'arm') return { os: 'linux', architecture }
  const armVersion = Number((process.config.variables as { arm_version?: string }).arm_version)
  return { os: 'linux', architecture, variant: armVersion === 6 ? 'v6' : 'v7' }
}

/** `os/arch[/variant]` for messages and CLI output. */
export function formatPlatform(platform: Platform): string {
  const base = `${platform.os}/${platform.architecture}`
  return platform.variant ? `${base}/${platform.variant}` : base
}

/**
 * True when an image built for `candidate` runs as `wanted`: same os and arch, and
 * the same variant, with arm64's implicit v8 and arm's implicit v7 filled in.
 */
export function platformMatches(candidate: Platform, wanted: Platform): boolean {
  const c = normalizePlatform(candidate)
  const w = normalizePlatform(wanted)
  return c.os === w.os && c.architecture === w.architecture && c.variant === w.variant
}
