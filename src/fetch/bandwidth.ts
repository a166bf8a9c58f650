import { EdgestarError } from '../errors.js'

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1000,
  kb: 1000,
  kib: 1024,
  m: 1000 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1000 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
}

/**
 * Parses a byte count such as `512KiB`, `2MB`, `1.5m`, `100000` or `0` (binary units with
 * `i`, decimal without; an optional `/s` suffix is accepted for rates). `option` names
 * the setting in the error. Throws EDGESTAR_CONFIG_BAD_SIZE.
 */
export function parseByteSize(text: string | number, option = 'size'): number {
  if (typeof text === 'number' && Number.isFinite(text) && text >= 0) return Math.floor(text)
  const match = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*(?:\/s)?\s*$/i.exec(String(text))
  const factor = match ? UNITS[match[2]!.toLowerCase()] : undefined
  if (!match || factor === undefined)
    throw new EdgestarError(
      'EDGESTAR_CONFIG_BAD_SIZE',
      `${option}: cannot read ${JSON.stringify(text)} as a byte size`,
      {
        hint: `write a number with an optional unit, e.g. 512KiB, 2MiB, 1MB or 0 for none`,
      },
    )
  return Math.floor(Number(match[1]) * factor)
}

/** Formats a byte count for people: `1.5 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`
}
