import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { isProcessAlive } from './pins.js'

/**
 * The processes that have a state directory's store open, one empty file per process:
 * `STATE/users/PID`. The chunk cache asks before it punches a freed slot out of a pack:
 * another live process may have located that object just before it was evicted and still
 * be reading it. A file left by a killed process is ignored and removed.
 */
export class StateUsers {
  private readonly dir: string
  private readonly ownFile: string

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'users')
    this.ownFile = join(this.dir, String(process.pid))
  }

  /** Records this process as a user (at store open). */
  register(): void {
    mkdirSync(this.dir, { recursive: true })
    writeFileSync(this.ownFile, '')
  }

  /** Removes this process's record (at store close). */
  unregister(): void {
    rmSync(this.ownFile, { force: true })
  }

  /** True when another live process has the store open (blocking: CLI, start-up). */
  hasOthersSync(): boolean {
    let names: string[]
    try {
      names = readdirSync(this.dir)
    } catch {
      return false
    }
    for (const name of names)
      if (this.isDeadOther(name)) rmSync(join(this.dir, name), { force: true })
    return names.some((name) => this.isLiveOther(name))
  }

  private isLiveOther(name: string): boolean {
    const pid = pidOf(name)
    return pid !== null && pid !== process.pid && isProcessAlive(pid)
  }

  private isDeadOther(name: string): boolean {
    const pid = pidOf(name)
    return pid === null || (pid !== process.pid && !isProcessAlive(pid))
  }
}

function pidOf(name: string): number | null {
  return /^[1-9][0-9]{0,9}$/.test(name) ? Number(name) : null
}
