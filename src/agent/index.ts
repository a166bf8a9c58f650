/**
 * agent: the daemon. Wires store, fetch, images, fs and runtime; owns the deployment
 * state machine; restores deployments after a restart; serves the local API on a Unix
 * socket (protocol in docs/agent-api.md); offers a DeviceController to the MQTT bridge.
 */
export { Agent, type AgentOptions, type BackendFactory } from './agent.js'
export { AgentClient } from './api-client.js'
export { type ApiHandler, ApiServer, type ApiServerOptions } from './api-server.js'
export { clientFor, formatFetched, formatTable } from './client-support.js'
export {
  AGENT_OPTIONS,
  type AgentConfig,
  type AgentOption,
  loadAgentConfig,
  SHARED_OPTIONS,
} from './config.js'
export {
  DeploymentManager,
  type DeploymentManagerEvents,
  type DeploymentManagerOptions,
  type RemoveResult,
} from './deployment-manager.js'
export { AgentDeviceController } from './device-controller.js'
export { formatDuration, sigkillNote } from './duration-text.js'
export { createLazyBackend, LazyImageBackend } from './lazy-image-backend.js'
export { startMqtt } from './mqtt-hookup.js'
export {
  type OptimizeOptions,
  type OptimizeResult,
  type OptimizeServices,
  optimizeImage,
} from './optimize-image.js'
export {
  API_METHODS,
  type ApiError,
  type ApiMessage,
  type ApiMethod,
  type ApiRequest,
  DEFAULT_SOCKET_PATH,
  MAX_REQUEST_BYTES,
} from './protocol.js'
export * from './types.js'
export { checkDeployRequest, checkName } from './validate.js'
