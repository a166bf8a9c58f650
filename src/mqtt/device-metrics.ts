import { loadavg } from 'node:os'
import { resolve, sep } from 'node:path'
import * as si from 'systeminformation'

/** The `system` part of a telemetry message (see schemas/telemetry.schema.json). */
export interface DeviceMetrics {
  cpuLoadPercent: number
  loadAverage1m: number
  memory: { totalBytes: number; availableBytes: number }
  disk: { path: string; freeBytes: number; sizeBytes: number }
  temperatureCelsius?: number
  uptimeSec: number
}

/**
 * Samples the device through systeminformation: CPU load since the previous call,
 * memory, free space of the filesystem holding `diskPath` (the agent's state
 * directory), the main CPU temperature when the board has a sensor, and uptime.
 * A failing probe yields zeros rather than no telemetry at all.
 */
export async function sampleDeviceMetrics(diskPath: string): Promise<DeviceMetrics> {
  const [load, memory, filesystems, temperature] = await Promise.all([
    si.currentLoad().catch(() => undefined),
    si.mem().catch(() => undefined),
    si.fsSize().catch(() => []),
    si.cpuTemperature().catch(() => undefined),
  ])

  const disk = filesystemOf(resolve(diskPath), filesystems)
  const metrics: DeviceMetrics = {
    cpuLoadPercent: roundTo(load?.currentLoad ?? 0, 2),
    loadAverage1m: roundTo(loadavg()[0] ?? 0, 2),
    memory: { totalBytes: memory?.total ?? 0, availableBytes: memory?.available ?? 0 },
    disk: { path: diskPath, freeBytes: disk?.available ?? 0, sizeBytes: disk?.size ?? 0 },
    uptimeSec: si.time().uptime,
  }
  const celsius = temperature?.main
  if (typeof celsius === 'number' && Number.isFinite(celsius)) metrics.temperatureCelsius = celsius
  return metrics
}

// The mount point that is the longest prefix of `path`.
function filesystemOf(path: string, filesystems: si.Systeminformation.FsSizeData[]) {
  let best: si.Systeminformation.FsSizeData | undefined
  for (const fs of filesystems) {
    const mount = fs.mount.endsWith(sep) ? fs.mount : `${fs.mount}${sep}`
    const isUnder = `${path}${sep}`.startsWith(mount)
    if (isUnder && (best === undefined || fs.mount.length > best.mount.length)) best = fs
  }
  return best
}

function roundTo(value: number, digits: number): number {
  const scale = 10 ** digits
  return Math.round(value * scale) / scale
}
