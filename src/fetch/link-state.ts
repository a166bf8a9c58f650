import { EventEmitter } from 'node:events'

/** The scheduler's view of the link to the registry. */
export type LinkState = 'online' | 'degraded' | 'offline'

/** Emitted as `change` with the new and the previous state. */
export interface LinkChange {
  state: LinkState
  previous: LinkState
  reason: string
}

/**
 * Tracks the link from request outcomes: one failed request makes it `degraded`, a
 * second in a row (or a refused connection) `offline`; any success brings it back
 * `online`. The scheduler probes while offline; nothing here keeps time.
 */
// TODO(fetch): only failures make the link `degraded`; a link that answers but slowly
// (far below the cap, long time to first byte) still counts as online.
export class LinkMonitor extends EventEmitter<{ change: [LinkChange] }> {
  private current: LinkState = 'online'
  private failuresInRow = 0

  get state(): LinkState {
    return this.current
  }

  /** Records a successful request. */
  succeeded(): void {
    this.failuresInRow = 0
    this.set('online', 'request succeeded')
  }

  /** Records a failed request; `hard` when the registry could not be reached at all. */
  failed(reason: string, hard: boolean): void {
    this.failuresInRow++
    this.set(hard || this.failuresInRow >= 2 ? 'offline' : 'degraded', reason)
  }

  private set(state: LinkState, reason: string): void {
    if (state === this.current) return
    const previous = this.current
    this.current = state
    this.emit('change', { state, previous, reason })
  }
}
