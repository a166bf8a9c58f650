import { formatBytes } from '../fetch/index.js'
import { AgentClient } from './api-client.js'
import { DEFAULT_SOCKET_PATH } from './protocol.js'
import type { DeploymentInfo } from './types.js'

/** The socket a client command talks to: `--socket`, then EDGESTAR_SOCKET, then the default. */
export function clientFor(
  options: { socket?: string },
  env: NodeJS.ProcessEnv = process.env,
): AgentClient {
  return new AgentClient(options.socket ?? env.EDGESTAR_SOCKET ?? DEFAULT_SOCKET_PATH)
}

/** `1.2 MiB of 80.0 MiB (2%)`, or `-` before the image resolved. */
export function formatFetched(info: Pick<DeploymentInfo, 'fetchedBytes' | 'totalBytes'>): string {
  if (info.totalBytes === 0) return '-'
  const percent = Math.floor((info.fetchedBytes * 100) / info.totalBytes)
  return `${formatBytes(info.fetchedBytes)} of ${formatBytes(info.totalBytes)} (${percent}%)`
}

/** A plain text table: columns padded to their widest cell. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((title, i) =>
    Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)),
  )
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd()
  return [line(header), ...rows.map(line)].join('\n')
}
