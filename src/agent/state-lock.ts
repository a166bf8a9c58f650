import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { EdgestarError } from '../errors.js'

const LOCK_NAME = 'agent.pid'

/**
 * Claims a state directory for one agent process. A second agent on the same directory
 * would take the first one's mounts and containers for leftovers of a crash and clear
 * them, so it is refused (EDGESTAR_AGENT_STATE_DIR_BUSY). A lock whose process is gone,
 * or is no longer an edgestar process (a pid reused after a reboot), is taken over.
 * Returns the function that releases the lock.
 */
export function lockStateDir(stateDir: string): () => void {
  const lockPath = join(stateDir, LOCK_NAME)
  const holder = readHolder(lockPath)
  if (holder !== undefined && holder !== process.pid && isEdgestarProcess(holder)) {
    throw new EdgestarError(
      'EDGESTAR_AGENT_STATE_DIR_BUSY',
      `another edgestar agent (pid ${holder}) is using the state directory ${stateDir}`,
      {
        hint:
          'stop that agent first (systemctl stop edgestar-agent, or kill it), or give this one ' +
          'its own --state-dir and --socket',
      },
    )
  }

  writeFileSync(lockPath, `${process.pid}\n`, { mode: 0o600 })
  return () => {
    if (readHolder(lockPath) === process.pid) rmSync(lockPath, { force: true })
  }
}

function readHolder(lockPath: string): number | undefined {
  try {
    const pid = Number(readFileSync(lockPath, 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

function isEdgestarProcess(pid: number): boolean {
  try {
    // `bin/edgestar` execs node on dist/src/cli/main.js; a packaged build runs as edgestar.
    return /edgestar|cli\/main\.js/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'))
  } catch {
    return false
  }
}
