import type { Database } from 'better-sqlite3'
import type { StoreThreads } from './outbox.js'

/** What `put` takes. */
export interface DeploymentInput {
  name: string
  image: string
  spec: unknown
  state: string
  reason?: string | null
}

/** A deployment row (owned by the agent's state machine; the store only keeps it). */
export interface DeploymentRow {
  name: string
  image: string
  spec: unknown
  state: string
  reason: string | null
  updatedAt: number
}

/** One recorded state change of a deployment. */
export interface DeploymentHistoryRow {
  id: number
  name: string
  state: string
  reason: string | null
  at: number
}

/**
 * Deployment rows and their state history. Every write is durable (synchronous=FULL):
 * after a power cut the agent must restore exactly the deployments it acknowledged. The
 * `...Async` writes are committed (as durably) by the store's writer thread, off the
 * event loop; the writer answers in order, so one resolving means every earlier one is
 * committed too.
 */
export class DeploymentRecords {
  constructor(
    private readonly db: Database,
    private readonly durably: <T>(fn: () => T) => T,
    private readonly threads?: StoreThreads,
  ) {}

  /** `put` in the writer thread. Rejects with EDGESTAR_STORE_QUERY_FAILED or _CLOSED. */
  putAsync(input: DeploymentInput): Promise<DeploymentRow> {
    return this.requireThreads().writer.call('deploymentPut', [input])
  }

  /** `setState` in the writer thread. Rejects as `putAsync` does. */
  setStateAsync(name: string, state: string, reason: string | null = null): Promise<boolean> {
    return this.requireThreads().writer.call('deploymentSetState', [name, state, reason])
  }

  /** `remove` in the writer thread. Rejects as `putAsync` does. */
  removeAsync(name: string): Promise<boolean> {
    return this.requireThreads().writer.call('deploymentRemove', [name])
  }

  /** Creates or replaces a deployment and appends its state to the history. */
  put(input: DeploymentInput): DeploymentRow {
    const now = Date.now()
    const reason = input.reason ?? null
    this.durably(() => {
      this.db
        .prepare(
          `INSERT INTO deployments (name, image, spec_json, state, reason, updated_at) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT(name) DO UPDATE SET image = excluded.image, spec_json = excluded.spec_json,
             state = excluded.state, reason = excluded.reason, updated_at = excluded.updated_at`,
        )
        .run(input.name, input.image, JSON.stringify(input.spec), input.state, reason, now)
      this.appendHistory(input.name, input.state, reason, now)
    })
    return this.get(input.name)!
  }

  /** Changes the state of an existing deployment; returns false when there is none. */
  setState(name: string, state: string, reason: string | null = null): boolean {
    const now = Date.now()
    return this.durably(() => {
      const result = this.db
        .prepare('UPDATE deployments SET state = ?, reason = ?, updated_at = ? WHERE name = ?')
        .run(state, reason, now, name)
      if (result.changes === 0) return false
      this.appendHistory(name, state, reason, now)
      return true
    })
  }

  /** A deployment, or undefined. */
  get(name: string): DeploymentRow | undefined {
    const row = this.db.prepare('SELECT * FROM deployments WHERE name = ?').get(name) as
      | RawDeployment
      | undefined
    return row === undefined ? undefined : toRow(row)
  }

  /** Every deployment, by name. */
  list(): DeploymentRow[] {
    return (
      this.db.prepare('SELECT * FROM deployments ORDER BY name').all() as RawDeployment[]
    ).map(toRow)
  }

  /** Removes a deployment (its history stays). Returns false when there was none. */
  remove(name: string): boolean {
    return this.durably(() => {
      const changed =
        this.db.prepare('DELETE FROM deployments WHERE name = ?').run(name).changes > 0
      if (changed) this.appendHistory(name, 'removed', null, Date.now())
      return changed
    })
  }

  /** The newest `limit` state changes of a deployment, oldest first. */
  history(name: string, limit = 50): DeploymentHistoryRow[] {
    const rows = this.db
      .prepare('SELECT * FROM deployment_history WHERE name = ? ORDER BY id DESC LIMIT ?')
      .all(name, limit) as DeploymentHistoryRow[]
    return rows.reverse()
  }

  private requireThreads(): StoreThreads {
    if (this.threads === undefined) throw new Error('these deployment records have no threads')
    return this.threads
  }

  private appendHistory(name: string, state: string, reason: string | null, at: number): void {
    this.db
      .prepare('INSERT INTO deployment_history (name, state, reason, at) VALUES (?, ?, ?, ?)')
      .run(name, state, reason, at)
  }
}

interface RawDeployment {
  name: string
  image: string
  spec_json: string
  state: string
  reason: string | null
  updated_at: number
}

function toRow(row: RawDeployment): DeploymentRow {
  return {
    name: row.name,
    image: row.image,
    spec: JSON.parse(row.spec_json) as unknown,
    state: row.state,
    reason: row.reason,
    updatedAt: row.updated_at,
  }
}
