import { statfs } from 'node:fs/promises'
import { loadavg, uptime } from 'node:os'
import * as si from 'systeminformation'

/** A probe slower than this is reported as missing rather than holding telemetry up. */
const PROBE_TIMEOUT_MS = 5000

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
 * A failing or stuck probe yields zeros rather than no telemetry at all. The disk is
 * read with statfs on `diskPath` alone: a listing of every mount (`df`) would hang on a
 * FUSE mount whose server is stuck, and a gateway running lazy images has many.
 * Uptime comes from node:os: systeminformation's `time()` runs `date` with execSync (for
 * the time zone), which held the event loop that serves FUSE 10 to 50 ms per sample.
 */
export async function sampleDeviceMetrics(diskPath: string): Promise<DeviceMetrics> {
  const [load, memory, disk, temperature] = await Promise.all([
    bounded(si.currentLoad()),
    bounded(si.mem()),
    bounded(statfs(diskPath)),
    // TODO(mqtt): systeminformation's cpuTemperature reads the thermal zones with execSync
    // (a shell), blocking the event loop that serves FUSE 10 to 20 ms per telemetry sample
    // on the 2-core build machine; reading /sys asynchronously would avoid it.
    bounded(si.cpuTemperature()),
  ])

  const metrics: DeviceMetrics = {
    cpuLoadPercent: roundTo(load?.currentLoad ?? 0, 2),
    loadAverage1m: roundTo(loadavg()[0] ?? 0, 2),
    memory: { totalBytes: memory?.total ?? 0, availableBytes: memory?.available ?? 0 },
    disk: {
      path: diskPath,
      freeBytes: disk ? disk.bavail * disk.bsize : 0,
      sizeBytes: disk ? disk.blocks * disk.bsize : 0,
    },
    uptimeSec: Math.round(uptime()),
  }
  const celsius = temperature?.main
  if (typeof celsius === 'number' && Number.isFinite(celsius)) metrics.temperatureCelsius = celsius
  return metrics
}

// Settles with undefined when the probe fails or takes longer than PROBE_TIMEOUT_MS.
function bounded<T>(probe: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), PROBE_TIMEOUT_MS)
    timer.unref()
  })
  return Promise.race([probe.catch(() => undefined), timeout]).finally(() => clearTimeout(timer))
}

function roundTo(value: number, digits: number): number {
  const scale = 10 ** digits
  return Math.round(value * scale) / scale
}
