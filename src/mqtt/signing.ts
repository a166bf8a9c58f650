import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto'
import { EdgestarError } from '../errors.js'

/** The field that carries the signature; it is left out of the signed bytes. */
export const SIGNATURE_FIELD = 'sig'

/**
 * The canonical form of a command, the bytes an Ed25519 signature covers: the command
 * without its top-level `sig`, as JSON with object keys sorted by UTF-16 code units at
 * every depth, no whitespace, strings and numbers written as JSON.stringify writes them
 * (the same output as RFC 8785 JCS for the integers and strings commands carry).
 */
export function canonicalCommandBytes(command: Record<string, unknown>): Buffer {
  const { [SIGNATURE_FIELD]: _sig, ...rest } = command
  return Buffer.from(canonicalJson(rest), 'utf8')
}

/** Sorted-key, whitespace-free JSON of a JSON value. Throws on non-finite numbers. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string')
    return JSON.stringify(value)
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error('canonical JSON cannot hold a non-finite number')
    return JSON.stringify(value)
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  throw new Error(`canonical JSON cannot hold a ${typeof value}`)
}

/** Returns a copy of `command` with `sig` set to its base64 Ed25519 signature. */
export function signCommand<T extends Record<string, unknown>>(
  command: T,
  privateKey: KeyObject,
): T & { sig: string } {
  const signature = sign(null, canonicalCommandBytes(command), privateKey)
  return { ...command, sig: signature.toString('base64') }
}

/** The verdict on a command's signature. */
export type SignatureCheck = 'valid' | 'missing' | 'invalid'

/** Checks `command.sig` against the fleet public key. */
export function checkCommandSignature(
  command: Record<string, unknown>,
  publicKey: KeyObject,
): SignatureCheck {
  const sig = command[SIGNATURE_FIELD]
  if (sig === undefined) return 'missing'
  if (typeof sig !== 'string') return 'invalid'
  try {
    const bytes = canonicalCommandBytes(command)
    return verify(null, bytes, publicKey, Buffer.from(sig, 'base64')) ? 'valid' : 'invalid'
  } catch {
    return 'invalid'
  }
}

/** A new Ed25519 key pair as PEM: PKCS#8 private key, SPKI public key. */
export function generateFleetKeyPair(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  }
}

/** Parses an Ed25519 public key (SPKI PEM); throws EDGESTAR_MQTT_KEY_INVALID. */
export function loadFleetPublicKey(pem: string | Buffer, source: string): KeyObject {
  if (String(pem).includes('PRIVATE KEY'))
    throw wrongKind(source, 'a private key', 'the device needs only the public key (FILE.pub)')
  return checkEd25519(() => createPublicKey(pem), source)
}

/** Parses an Ed25519 private key (PKCS#8 PEM); throws EDGESTAR_MQTT_KEY_INVALID. */
export function loadFleetPrivateKey(pem: string | Buffer, source: string): KeyObject {
  if (String(pem).includes('PUBLIC KEY'))
    throw wrongKind(source, 'a public key', 'signing needs the private key (FILE, not FILE.pub)')
  return checkEd25519(() => createPrivateKey(pem), source)
}

function wrongKind(source: string, found: string, hint: string): EdgestarError {
  return new EdgestarError('EDGESTAR_MQTT_KEY_INVALID', `${source} holds ${found}`, {
    hint: `${hint}; \`edgestar fleet keygen --out FILE\` writes both`,
  })
}

function checkEd25519(parse: () => KeyObject, source: string): KeyObject {
  let key: KeyObject
  try {
    key = parse()
  } catch (err) {
    throw new EdgestarError('EDGESTAR_MQTT_KEY_INVALID', `cannot read the key in ${source}`, {
      cause: err,
      hint: 'make a key pair with `edgestar fleet keygen --out FILE`',
    })
  }
  if (key.asymmetricKeyType === 'ed25519') return key
  throw new EdgestarError(
    'EDGESTAR_MQTT_KEY_INVALID',
    `the key in ${source} is ${key.asymmetricKeyType}, not Ed25519`,
    { hint: 'make a key pair with `edgestar fleet keygen --out FILE`' },
  )
}
