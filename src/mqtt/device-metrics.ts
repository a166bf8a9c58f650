import { readdir, readFile, statfs } from 'node:fs/promises'
import { loadavg, uptime } from 'node:os'
import { join } from 'node:path'
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
 * the time zone), which held the event loop that serves FUSE 10 to 50 ms per sample. CPU
 * load and temperature are read from procfs and sysfs here for the same reason (its
 * `currentLoad` and `cpuTemperature` run a shell with execSync on Linux).
 */
export async function sampleDeviceMetrics(diskPath: string): Promise<DeviceMetrics> {
  const [load, memory, disk, temperature] = await Promise.all([
    bounded(cpuLoadPercent()),
    bounded(si.mem()),
    bounded(statfs(diskPath)),
    bounded(cpuTemperature()),
  ])

  const metrics: DeviceMetrics = {
    cpuLoadPercent: roundTo(load ?? 0, 2),
    loadAverage1m: roundTo(loadavg()[0] ?? 0, 2),
    memory: { totalBytes: memory?.total ?? 0, availableBytes: memory?.available ?? 0 },
    disk: {
      path: diskPath,
      freeBytes: disk ? disk.bavail * disk.bsize : 0,
      sizeBytes: disk ? disk.blocks * disk.bsize : 0,
    },
    uptimeSec: Math.round(uptime()),
  }
  if (temperature !== undefined) metrics.temperatureCelsius = temperature
  return metrics
}

// /proc/stat's cpu totals at the previous sample.
let previousCpu: { busy: number; total: number } | undefined

/**
 * Percent of CPU time spent busy (all cores) since the previous call, read from
 * `statPath` asynchronously; the first call gives the average since boot.
 */
export async function cpuLoadPercent(statPath = '/proc/stat'): Promise<number | undefined> {
  const line = (await readFile(statPath, 'utf8')).split('\n').find((l) => l.startsWith('cpu '))
  if (line === undefined) return undefined
  // user nice system idle iowait irq softirq steal (guest time is already in user).
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number)
  const total = ticks.reduce((sum, value) => sum + (Number.isFinite(value) ? value : 0), 0)
  const busy = total - (ticks[3] ?? 0) - (ticks[4] ?? 0)
  const before = previousCpu ?? { busy: 0, total: 0 }
  previousCpu = { busy, total }
  const elapsed = total - before.total
  return elapsed > 0 ? (100 * (busy - before.busy)) / elapsed : 0
}

/** Thermal zone types that name the CPU or the SoC it sits on, best first. */
const CPU_ZONE_TYPES = [/cpu/i, /x86_pkg_temp/i, /soc/i]

/**
 * The CPU's temperature in °C from the kernel's thermal zones under `thermalDir`
 * (asynchronous reads only): the first zone whose type names the CPU or SoC, else the
 * first zone; undefined when the board exposes none.
 */
export async function cpuTemperature(
  thermalDir = '/sys/class/thermal',
): Promise<number | undefined> {
  const names = (await readdir(thermalDir).catch(() => [] as string[]))
    .filter((name) => /^thermal_zone\d+$/.test(name))
    .sort((a, b) => Number(a.slice(12)) - Number(b.slice(12)))
  const zones = await Promise.all(
    names.map(async (name) => ({
      type: await readFile(join(thermalDir, name, 'type'), 'utf8').catch(() => ''),
      milli: Number.parseInt(
        await readFile(join(thermalDir, name, 'temp'), 'utf8').catch(() => ''),
        10,
      ),
    })),
  )
  const readable = zones.filter((zone) => Number.isFinite(zone.milli))
  const cpu = CPU_ZONE_TYPES.map((type) => readable.find((zone) => type.test(zone.type))).find(
    (zone) => zone !== undefined,
  )
  const zone = cpu ?? readable[0]
  return zone === undefined ? undefined : zone.milli / 1000
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
