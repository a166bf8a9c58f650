import { EdgestarError } from '../errors.js'

/** The default first topic level of every edgestar topic. */
export const DEFAULT_TOPIC_PREFIX = 'edgestar'

/** Every topic one device uses, derived from the prefix, its id and its groups. */
export interface DeviceTopics {
  /** Commands for this device (QoS 1 subscription). */
  command: string
  /** Results of commands, unless the command named an MQTT 5 response topic. */
  result: string
  /** Retained status; the last will writes offline here. */
  status: string
  telemetry: string
  events: string
  /** Command topics of the device's groups, in the order configured. */
  groupCommands: string[]
}

/** Builds the topics of device `deviceId` under `prefix`; checks each level. */
export function deviceTopics(prefix: string, deviceId: string, groups: string[]): DeviceTopics {
  checkTopicPrefix(prefix)
  checkTopicLevel(deviceId, 'device id')
  for (const group of groups) checkTopicLevel(group, 'group')
  const base = `${prefix}/${deviceId}`
  return {
    command: `${base}/cmd`,
    result: `${base}/cmd/result`,
    status: `${base}/status`,
    telemetry: `${base}/telemetry`,
    events: `${base}/events`,
    groupCommands: groups.map((group) => groupCommandTopic(prefix, group)),
  }
}

/** The command topic of a group: `PREFIX/group/GROUP/cmd`. */
export function groupCommandTopic(prefix: string, group: string): string {
  return `${prefix}/group/${group}/cmd`
}

/**
 * Checks one topic level taken from configuration. `group` is refused as a device id
 * because `PREFIX/group/...` holds the group topics.
 */
export function checkTopicLevel(value: string, what: string): void {
  const isValid =
    value.length > 0 &&
    value.length <= 128 &&
    !/[/+#]/.test(value) &&
    !value.includes('\0') &&
    !(what === 'device id' && value === 'group')
  if (isValid) return
  throw new EdgestarError(
    'EDGESTAR_MQTT_TOPIC_INVALID',
    `${what} '${value}' cannot be a topic level`,
    {
      hint: `use 1 to 128 characters without '/', '+', '#' (and not 'group' as a device id)`,
    },
  )
}

function checkTopicPrefix(prefix: string): void {
  for (const level of prefix.split('/')) checkTopicLevel(level, 'topic prefix level')
}
