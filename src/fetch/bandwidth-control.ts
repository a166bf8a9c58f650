import { readFileSync } from 'node:fs'
import { moduleLogger } from '../log.js'
import { parseByteSize } from './bandwidth.js'
import type { FetchScheduler } from './scheduler.js'

const log = moduleLogger('fetch')

/**
 * Lets an operator change the background cap of a running process without an API:
 * write a rate (`512KiB`, `0` for none) to `controlFile` and send SIGHUP. The agent's
 * local API calls `scheduler.setBandwidth` directly. Returns a function that removes
 * the handler.
 */
export function installBandwidthControl(
  scheduler: FetchScheduler,
  controlFile: string,
): () => void {
  const onHangup = (): void => {
    try {
      const text = readFileSync(controlFile, 'utf8').trim()
      scheduler.setBandwidth(parseByteSize(text, controlFile))
    } catch (err) {
      log.warn({ controlFile, err: String(err) }, 'bandwidth control file unreadable')
    }
  }
  process.on('SIGHUP', onHangup)
  return () => {
    process.off('SIGHUP', onHangup)
  }
}
