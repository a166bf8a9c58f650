import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import {
  cpuLoadPercent,
  cpuTemperature,
  sampleDeviceMetrics,
} from '../../src/mqtt/device-metrics.js'

describe('device metrics', () => {
  const dirs: string[] = []
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true })
  })

  /** A sysfs thermal class with these zones (type, millidegrees). */
  async function thermal(zones: [string, string][]): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'edgestar-thermal-'))
    dirs.push(dir)
    for (const [i, [type, temp]] of zones.entries()) {
      await mkdir(join(dir, `thermal_zone${i}`))
      await writeFile(join(dir, `thermal_zone${i}`, 'type'), `${type}\n`)
      await writeFile(join(dir, `thermal_zone${i}`, 'temp'), `${temp}\n`)
    }
    return dir
  }

  it('reads the CPU zone from sysfs, else the first readable one, else none', async () => {
    const board = await thermal([
      ['acpitz', '27800'],
      ['cpu-thermal', '45312'],
    ])
    assert.equal(await cpuTemperature(board), 45.312)
    assert.equal(await cpuTemperature(await thermal([['acpitz', '27800']])), 27.8)
    assert.equal(await cpuTemperature(await thermal([['broken', 'n/a']])), undefined)
    assert.equal(await cpuTemperature(join(board, 'missing')), undefined)
  })

  it('gives the CPU load since boot, then since the previous call, from /proc/stat', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'edgestar-stat-'))
    dirs.push(dir)
    const stat = join(dir, 'stat')
    // user nice system idle iowait irq softirq steal guest guest_nice
    await writeFile(stat, 'cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n')
    assert.equal(await cpuLoadPercent(stat), 20)
    await writeFile(stat, 'cpu  150 0 150 750 150 0 0 0 0 0\n')
    assert.equal(await cpuLoadPercent(stat), 50)
  })

  it('samples memory, disk and uptime of this machine', async () => {
    const metrics = await sampleDeviceMetrics(tmpdir())
    assert.ok(metrics.memory.totalBytes > 0)
    assert.ok(metrics.disk.sizeBytes > 0)
    assert.ok(metrics.uptimeSec > 0)
    assert.ok(metrics.cpuLoadPercent >= 0 && metrics.cpuLoadPercent <= 100)
  })
})
