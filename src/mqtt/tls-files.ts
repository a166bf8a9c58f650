import { readFileSync } from 'node:fs'
import type { IClientOptions } from 'mqtt'
import { EdgestarError } from '../errors.js'
import type { TlsFiles } from './options.js'

/**
 * Reads the TLS files into mqtt.js options (`ca`, `cert`, `key`, `rejectUnauthorized`,
 * which defaults to true). Throws EDGESTAR_MQTT_TLS_UNREADABLE naming the file.
 */
export function readTlsFiles(tls: TlsFiles | undefined): Partial<IClientOptions> {
  if (tls === undefined) return {}
  const result: Partial<IClientOptions> = { rejectUnauthorized: tls.rejectUnauthorized ?? true }
  if (tls.caFile !== undefined) result.ca = readPem(tls.caFile, 'CA file')
  if (tls.certFile !== undefined) result.cert = readPem(tls.certFile, 'client certificate')
  if (tls.keyFile !== undefined) result.key = readPem(tls.keyFile, 'client key')
  return result
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path)
  } catch (err) {
    throw new EdgestarError('EDGESTAR_MQTT_TLS_UNREADABLE', `cannot read the TLS ${what} ${path}`, {
      cause: err,
      hint: 'check the path and that this user may read it',
    })
  }
}
