import type { CommandResult, FleetMessage } from '../mqtt/index.js'
import type { ErrorBody } from './output.js'

/** What `edgestar fleet ... --group G` prints: every result, and a failure summed up. */
export interface GroupOutcome {
  ok: boolean
  group: string
  results: CommandResult[]
  error?: ErrorBody
}

/**
 * Sums up the results of a group command. Not ok when no device answered within the
 * timeout (EDGESTAR_MQTT_COMMAND_TIMEOUT) or any device failed (the first failure's code
 * and hint, with how many failed).
 */
export function groupOutcome(
  group: string,
  results: CommandResult[],
  command: { id: string; timeoutSec: number },
): GroupOutcome {
  if (results.length === 0)
    return {
      ok: false,
      group,
      results,
      error: {
        code: 'EDGESTAR_MQTT_COMMAND_TIMEOUT',
        message: `no device of group ${group} answered command ${command.id} within ${command.timeoutSec}s`,
        hint:
          'devices that are offline run it when they reconnect, unless it expires first; ' +
          `ask again with --id ${command.id}`,
      },
    }

  const failed = results.filter((result) => !result.ok)
  const first = failed[0]?.error
  if (first === undefined) return { ok: true, group, results }
  const others = failed.length > 1 ? ` (and ${failed.length - 1} more)` : ''
  return {
    ok: false,
    group,
    results,
    error: {
      code: first.code,
      message:
        `${failed.length} of ${results.length} devices of group ${group} failed: ` +
        `${failed[0]?.device}: ${first.message}${others}`,
      hint: first.hint ?? '`results` holds the error of each device',
    },
  }
}

/** One line for one device's result; a failure adds its hint on a second line. */
export function describeResult(result: CommandResult): string {
  if (!result.ok) {
    const error = result.error
    const line = `${result.device}: ${result.type ?? 'command'} failed ${error?.code}: ${error?.message}`
    return error?.hint ? `${line}\n  hint: ${error.hint}` : line
  }
  if (typeof result.status === 'object' && result.status !== null)
    return describeMessage({
      device: result.device,
      kind: 'status',
      topic: '',
      body: result.status,
    })
  const { id: _id, ok: _ok, device, type, time: _time, duplicate, ...rest } = result
  const extra = Object.keys(rest).length === 0 ? '' : ` ${JSON.stringify(rest)}`
  return `${device}: ${type} ok${duplicate ? ' (answered before)' : ''}${extra}`
}

/** One line for a status, event or telemetry message, as `fleet watch` prints it. */
export function describeMessage(message: FleetMessage): string {
  const body = message.body as Record<string, unknown>
  const time = typeof body.time === 'string' ? body.time : new Date().toISOString()
  if (message.kind === 'status') {
    if (body.online !== true)
      return `${time} ${message.device} offline (${body.reason ?? 'unknown'})`
    const deployments = (body.deployments as { name: string; state: string }[] | undefined) ?? []
    const list = deployments.map((d) => `${d.name}=${d.state}`).join(' ') || 'no deployments'
    const link = (body.link as { state?: string } | undefined)?.state ?? '?'
    return `${time} ${message.device} online link=${link} ${list}`
  }
  if (message.kind === 'events') {
    const { device: _d, time: _t, msgId: _m, type, ...rest } = body
    return `${time} ${message.device} ${type} ${JSON.stringify(rest)}`
  }
  return `${time} ${message.device} ${message.kind} ${JSON.stringify(body)}`
}
