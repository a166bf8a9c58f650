import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'

/**
 * The default device id: /etc/machine-id (systemd's stable per-installation id), else
 * /var/lib/dbus/machine-id, else the host name. Never throws.
 */
export function defaultDeviceId(): string {
  for (const path of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    try {
      const id = readFileSync(path, 'utf8').trim()
      if (/^[0-9a-f]{32}$/i.test(id)) return id.toLowerCase()
    } catch {
      // NOTE: containers and minimal images often lack both files; fall through.
    }
  }
  return hostname()
}
