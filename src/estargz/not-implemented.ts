import { EdgestarError } from '../errors.js'

/** Thrown by API stubs that are committed before their bodies. */
export function notImplemented(what: string): never {
  throw new EdgestarError('EDGESTAR_NOT_IMPLEMENTED', `${what} is not implemented yet`)
}
